"""Golden vectors: the first N test images exactly as fed to the model, and what TFLM's
reference kernels computed for them (never XNNPACK's, whose int8 rounding differs).

For a model that does not take MNIST's images they are the inputs `--inputs` named (seeded
random ones or a .npy file, inputs.ModelInputs), with no labels unless the inputs had some.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

from mnist_edge.artifacts import GOLDEN_FILE
from mnist_edge.device import DeviceModel
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.inputs import ModelInputs, label_bytes, takes_mnist
from mnist_edge.records import RuntimeAccuracy
from mnist_edge.tensors import NUM_CLASSES

log = logging.getLogger(__name__)

OUTPUTS_FROM = "tflm (TFLM reference kernels)"
MAX_GOLDEN = 10_000  # golden vectors become C arrays: as many as MNIST's test images at most


@dataclass(frozen=True, eq=False)
class GoldenVectors:
    """Inputs (the model's dtype), TFLM's raw outputs and the labels of the first N test images,
    or of the inputs `source` names (labels None where they have none)."""

    inputs: np.ndarray
    outputs: np.ndarray
    labels: np.ndarray | None
    source: str | None = None  # "random:20 (seed 0)", "inputs.npy (20)"; None: MNIST's images

    @property
    def count(self) -> int:
        return len(self.inputs)

    @property
    def c_labels(self) -> np.ndarray:
        """The labels as golden_data.cc holds them (inputs.label_bytes)."""
        return label_bytes(self.labels, self.count)

    @property
    def described(self) -> str:
        """What the inputs are, for the C files' comments and the README."""
        if self.source is None:
            return f"the first {self.count} MNIST test images"
        return f"{self.source}{'' if self.labels is not None else ', no labels'}"

    def flat_outputs(self) -> np.ndarray:
        """The outputs one row per input (a model's output may have more than one axis)."""
        return self.outputs.reshape(self.count, -1)

    def summary(self) -> dict[str, object]:
        """What the manifest says of them."""
        summary: dict[str, object] = {"count": self.count}
        if self.source is None:
            summary["images"] = self.described
        else:
            summary["inputs_from"] = self.source
            summary["labels"] = "given" if self.labels is not None else "none"
        return summary | {
            "outputs_from": OUTPUTS_FROM,
            "file": GOLDEN_FILE,
            "inputs": f"{self.inputs.dtype.name} {list(self.inputs.shape)}",
            "outputs": f"{self.outputs.dtype.name} {list(self.outputs.shape)}",
        }

    def npz_bytes(self) -> bytes:
        """golden.npz: `inputs`, `outputs`, and `labels` where the inputs have them."""
        buffer = io.BytesIO()
        labels = {} if self.labels is None else {"labels": self.labels}
        np.savez(buffer, inputs=self.inputs, outputs=self.outputs, **labels)
        return buffer.getvalue()


def golden_vectors(
    inputs: np.ndarray, tflm_outputs: np.ndarray, labels: np.ndarray, count: int
) -> GoldenVectors:
    """The first `count` quantized test images, TFLM's outputs for them, and their labels."""
    return GoldenVectors(
        inputs=inputs[:count], outputs=tflm_outputs[:count], labels=labels[:count].astype(np.uint8)
    )


def given_vectors(
    inputs: np.ndarray, tflm_outputs: np.ndarray, labels: np.ndarray | None, source: str
) -> GoldenVectors:
    """Every given input (inputs.ModelInputs: values, labels, description) and TFLM's outputs."""
    return GoldenVectors(
        inputs=inputs,
        outputs=tflm_outputs,
        labels=None if labels is None else labels.astype(np.uint8),
        source=source,
    )


def _scores_mnist(device: DeviceModel) -> bool:
    """Whether the model takes MNIST's 28×28×1 images and scores its 10 digits."""
    return takes_mnist(device.input) and tuple(device.output.shape[1:]) == (NUM_CLASSES,)


def choose_inputs(
    device: DeviceModel, spec: str | None, golden: int, seed: int, data
) -> tuple[ModelInputs | None, int]:
    """What the golden vectors are made of, checked before any work, and how many.

    (None, N): MNIST's test set as always, for a model of MNIST's shapes without --inputs or
    with mnist[:N] (its first N images golden). Else the inputs --inputs names (seeded random
    ones, a .npy file; N defaults to `golden`), every one of them golden. MnistEdgeError in one
    line for a spec that does not fit the model.
    """
    from mnist_edge.data import MnistTest
    from mnist_edge.inputs import model_inputs

    mnist_model = _scores_mnist(device)
    if spec is None and mnist_model:
        return None, golden
    # A loaded test split is for the MNIST run; mnist:N here only counts (from the cache).
    path = None if isinstance(data, MnistTest) else data
    chosen = model_inputs(spec, device.info, count=golden, seed=seed, data=path, origin=device.name)
    if chosen.mnist and mnist_model:
        return None, chosen.count
    if chosen.count > MAX_GOLDEN:
        raise MnistEdgeError(
            f"--inputs {spec}: {chosen.count:,} inputs; the golden vectors (C arrays) take at "
            f"most {MAX_GOLDEN:,}."
        )
    return chosen, chosen.count


def run_given(
    device: DeviceModel, chosen: ModelInputs, tflm
) -> tuple[dict[str, np.ndarray], list[RuntimeAccuracy], GoldenVectors]:
    """The inputs --inputs named on TFLM (`tflm`, a TFLMRunner) and on each LiteRT that loads
    the model: raw outputs by runtime, top-1 accuracy where the inputs have labels (MNIST's
    images), as verify --inputs measures it, and the golden vectors (every input)."""
    from mnist_edge.compare import accuracy as top1
    from mnist_edge.runtimes import RUNTIMES, open_runner

    values = chosen.values
    log.info("Running TFLM on %s", chosen.description)
    outputs = {"tflm": tflm.predict_raw(values)}
    for runtime in ("litert-ref", "litert"):
        try:
            runner = open_runner(device.path, runtime, any_shape=True)
            outputs[runtime] = runner.predict_raw(values, batch=1000)
        except ModelError as exc:  # the manifest's proven_runtimes say why
            log.warning("Not comparing %s with TFLM: %s", runtime, exc)
    labels = chosen.labels
    accuracy = [
        RuntimeAccuracy(
            runtime,
            RUNTIMES[runtime][1],
            top1(raw.reshape(len(raw), -1), labels),
            len(labels),
            "bundle",
        )
        for runtime, raw in outputs.items()
        if labels is not None
    ]
    return outputs, accuracy, given_vectors(values, outputs["tflm"], labels, chosen.description)

"""The inputs a model is run on by the device commands (firmware, bundle, verify, bench), from
one spec: MNIST's test images where the model takes them, seeded random inputs, or a .npy file.

    inputs = model_inputs("random:20", info, count=20, seed=0)
    inputs.values      # N × the model's input shape, in its input dtype (int8 or float32)
    inputs.labels      # the true classes (MNIST), or None
    inputs.description # "random:20 (seed 0)", for the records

A spec is `mnist[:N]` (the default where the model takes 28×28×1 images: the first N test
images, labels kept), `random[:N]` (uniform over the input's range: int8 −128..127, or for a
float32 input the floats its QUANTIZE maps to −128..127) or a path to a `.npy` file of shape
(N, …), … being the model's input shape without its batch dimension, in the input's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError
from mnist_edge.model_info import ModelInfo, tensor_spec
from mnist_edge.options import DEFAULT_INPUTS_SEED as DEFAULT_SEED
from mnist_edge.tensors import IMAGE_SHAPE, TensorSpec, quantize

MAX_INPUTS = 100_000
# The input dtypes a spec can produce: int8 models, and int8 models with a float input that
# their first operator (QUANTIZE) turns into int8.
INPUT_DTYPES = ("int8", "float32")


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """Inputs for one model, as it takes them, and where they came from."""

    values: np.ndarray  # N × the input's shape without its batch dimension, in its dtype
    labels: np.ndarray | None  # N true classes (MNIST), or None: no accuracy without them
    description: str  # "MNIST test images 0..19", "random:20 (seed 0)", "inputs.npy (20)"
    mnist: bool = False  # MNIST's test images: the first N, in order

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def indices(self) -> np.ndarray:
        """Each input's number: its index in the MNIST test set, or its position."""
        return np.arange(self.count)

    @property
    def labels_or_none(self) -> np.ndarray:
        """uint8 labels for the firmware's labels.bin: 255 where there is no label."""
        return label_bytes(self.labels, self.count)


def label_bytes(labels: np.ndarray | None, count: int) -> np.ndarray:
    """Labels as the C files hold them, uint8: 255 for each of `count` inputs without one."""
    if labels is None:
        return np.full(count, 255, np.uint8)
    return np.asarray(labels).astype(np.uint8)


def takes_mnist(spec: TensorSpec) -> bool:
    """Whether the model's input is MNIST's image (any batch): 28×28×1."""
    return tuple(spec.shape[1:]) == IMAGE_SHAPE


def _input_quantization(info: ModelInfo, spec: TensorSpec) -> TensorSpec:
    """The int8 tensor a float32 input becomes: the output of the QUANTIZE that reads it."""
    for operator in info.operators:
        if operator.op == "QUANTIZE" and operator.inputs[:1] == (info.inputs[0],):
            quantized = tensor_spec(info, operator.outputs[0])
            if quantized.dtype == "int8" and quantized.quantized:
                return quantized
    raise MnistEdgeError(
        f"Input {spec.name} | Received a float32 input that no QUANTIZE to int8 reads. Note: "
        "random inputs need the int8 range the model quantizes its input to; pass a .npy file."
    )


def random_inputs(info: ModelInfo, count: int, seed: int) -> np.ndarray:
    """`count` inputs uniform over the input's int8 range (for a float input, the floats its
    QUANTIZE maps there), from numpy's PCG64 with `seed`: the same bytes for the same seed."""
    spec = tensor_spec(info, info.inputs[0])
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, size=(count, *spec.shape[1:]), dtype=np.int8)
    if spec.dtype == "int8":
        return q
    target = _input_quantization(info, spec)
    shifted = q.astype(np.float32) - np.float32(target.zero_point)
    return (shifted * np.float32(target.scale)).astype(np.float32)


def _count(text: str, spec: str, default: int) -> int:
    if not text:
        return default
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_INPUTS:
        raise MnistEdgeError(
            f"--inputs {spec!r}: expected a count from 1 to {MAX_INPUTS:,} after the colon."
        )
    return count


def _from_file(path: Path, spec: TensorSpec) -> np.ndarray:
    expected = f"{spec.dtype} (N, {', '.join(map(str, spec.shape[1:]))})"
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MnistEdgeError(
            f"--inputs {path}: cannot read it as .npy ({str(exc).strip() or type(exc).__name__})."
            f" Note: expected {expected}"
        ) from None
    if (
        not isinstance(values, np.ndarray)
        or values.dtype.name != spec.dtype
        or tuple(values.shape[1:]) != tuple(spec.shape[1:])
        or not 1 <= len(values) <= MAX_INPUTS
    ):
        received = f"{getattr(values, 'dtype', type(values).__name__)} {values.shape}"
        raise MnistEdgeError(
            f"--inputs {path} | Received {received}. Note: expected {expected}, "
            f"1 to {MAX_INPUTS:,} inputs"
        )
    return np.ascontiguousarray(values)


def mnist_inputs(spec: TensorSpec, images: np.ndarray, labels: np.ndarray) -> ModelInputs:
    """MNIST test images (uint8 N×28×28, the first N of the test set) and their labels as the
    model takes them: pixel / 255, quantized with its input's parameters where it is int8."""
    from mnist_edge.data import to_float

    count = len(images)
    floats = to_float(images)
    values = quantize(floats, spec) if spec.dtype == "int8" else floats.astype(spec.dtype)
    return ModelInputs(
        values=values.reshape(count, *spec.shape[1:]),
        labels=np.asarray(labels).copy(),
        description=f"MNIST test images 0..{count - 1}",
        mnist=True,
    )


def _mnist(spec: TensorSpec, count: int, data: Path | None) -> ModelInputs:
    from mnist_edge.data import load_test_split

    mnist = load_test_split(data)
    count = min(count, len(mnist.y_test))
    return mnist_inputs(spec, mnist.x_test[:count], mnist.y_test[:count])


def model_inputs(
    spec: str | None,
    info: ModelInfo,
    *,
    count: int,
    seed: int = DEFAULT_SEED,
    data: Path | None = None,
    origin: str = "the model",
) -> ModelInputs:
    """The inputs `spec` names for the model (None: MNIST's first `count` test images, where
    the model takes them); MnistEdgeError in one line for a spec that does not fit it."""
    input_spec = tensor_spec(info, info.inputs[0])
    if input_spec.dtype not in INPUT_DTYPES:
        raise MnistEdgeError(
            f"{origin}: input {input_spec.name} | Received dtype {input_spec.dtype}. Note: "
            f"expected {' or '.join(INPUT_DTYPES)}"
        )
    shape = f"({', '.join(map(str, input_spec.shape))}) {input_spec.dtype}"
    text = (spec or "mnist").strip()
    kind, _, number = text.partition(":")
    if kind in ("mnist", "random") and Path(text).suffix != ".npy":
        n = _count(number, text, count)
        if kind == "random":
            values = random_inputs(info, n, seed)
            return ModelInputs(values, None, f"random:{n} (seed {seed})")
        if not takes_mnist(input_spec):
            raise MnistEdgeError(
                f"{origin} takes {shape} inputs, not MNIST's 28×28×1 images: pass "
                "--inputs random:N (seeded random inputs) or --inputs FILE.npy."
            )
        return _mnist(input_spec, n, data)
    path = Path(text)
    if path.suffix != ".npy":
        raise MnistEdgeError(
            f"--inputs {text!r}: expected mnist[:N], random[:N] or a .npy file of {shape} inputs."
        )
    if not path.is_file():
        raise MnistEdgeError(f"--inputs {path}: no such file.")
    values = _from_file(path, input_spec)
    return ModelInputs(values, None, f"{path.name} ({len(values)})")


def inputs_for(
    model: Path, spec: str | None, *, count: int, seed: int = DEFAULT_SEED, data: Path | None = None
) -> ModelInputs:
    """The inputs `spec` names for the model file (see model_inputs)."""
    from mnist_edge.model_info import read_tflite

    _, info = read_tflite(Path(model))
    return model_inputs(spec, info, count=count, seed=seed, data=data, origin=Path(model).name)

"""The device layer that `bundle` and `firmware` share: the model a device gets, read and checked
once and handed along (`DeviceModel`), the budget check, and the C sources (`csource`).

    model = load_device_model(Path("artifacts/model_int8_mcu.tflite"))
    check_budgets([Need("flash", model.name, len(model.data), 131072, "--max-flash")])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import CheckFailed, ModelError
from mnist_edge.files import sha256_bytes
from mnist_edge.model_info import ModelInfo, model_kind, read_model, tensor_spec, tflm_refusal
from mnist_edge.tensors import IMAGE_SHAPE, NUM_CLASSES, TensorSpec

# What a refusal tells the user to do instead.
INT8_HINT = "mnist-edge export --int8 writes model_int8_mcu.tflite"


@dataclass(frozen=True)
class DeviceModel:
    """A .tflite a microcontroller can run: its bytes, parsed once, and what a device needs."""

    path: Path
    data: bytes
    info: ModelInfo
    kind: str  # int8, float32 (model_info.model_kind)
    sha256: str
    input: TensorSpec
    output: TensorSpec

    @property
    def name(self) -> str:
        return self.path.name


def load_device_model(
    path: Path, *, int8_only: bool = False, any_shape: bool = False
) -> DeviceModel:
    """Read and check a model for a device; ModelError, in one line, for anything TFLM cannot
    run there (a missing file, not a flatbuffer, float16 or dynamic-range weights, an input or
    output that is not MNIST's unless `any_shape`) and, with `int8_only`, for anything but a
    full-integer model."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: no such model file; run `mnist-edge export --int8` or pass --model."
        )
    if path.suffix != ".tflite":
        raise ModelError(f"{path}: expected a .tflite model (TFLM runs TFLite flatbuffers).")
    data = path.read_bytes()
    info = read_model(data, str(path))
    kind = model_kind(info)
    refusal = tflm_refusal(info, kind)
    if refusal:
        raise ModelError(
            f"{path}: {refusal}, so it cannot run on a microcontroller; use the full-integer "
            f"model instead ({INT8_HINT})."
        )
    if int8_only and kind != "int8":
        raise ModelError(
            f"{path}: a {kind} model; the firmware runs full-integer int8 models ({INT8_HINT})."
        )
    spec_in, spec_out = tensor_spec(info, info.inputs[0]), tensor_spec(info, info.outputs[0])
    mnist = spec_in.shape[1:] == IMAGE_SHAPE and spec_out.shape[1:] == (NUM_CLASSES,)
    if not mnist and not any_shape:
        raise ModelError(
            f"{path}: input {spec_in.shape}, output {spec_out.shape}; expected "
            f"(N, {', '.join(map(str, IMAGE_SHAPE))}) and (N, {NUM_CLASSES})."
        )
    return DeviceModel(path, data, info, kind, sha256_bytes(data), spec_in, spec_out)


@dataclass(frozen=True)
class Need:
    """What something needs of one resource, and the limit it was given (None: no limit)."""

    resource: str  # flash, RAM, arena
    who: str  # "model_int8_mcu.tflite", "cortex-m4 cmsis-nn"
    needed: int
    limit: int | None
    option: str  # the option that set the limit, named in the message
    detail: str = ""  # what the figure counts, e.g. "the model's bytes; code not counted"

    @property
    def over(self) -> int:
        return self.needed - self.limit if self.limit is not None else 0


def check_budgets(needs: list[Need]) -> None:
    """Raise CheckFailed naming every need over its limit, and by how much, in one line."""
    over = [
        f"{n.resource}: {n.who} needs {n.needed:,} bytes"
        + (f" ({n.detail})" if n.detail else "")
        + f", {n.over:,} over {n.option} {n.limit:,}"
        for n in needs
        if n.over > 0
    ]
    if over:
        raise CheckFailed("Does not fit: " + "; ".join(over) + ".")

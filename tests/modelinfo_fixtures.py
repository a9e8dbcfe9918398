"""A tiny model described by hand (no TensorFlow): the pure parts are tested on it."""

from __future__ import annotations

import math

from mnist_edge.model_info import ModelInfo, OperatorInfo, TensorInfo


def tensor(name, shape, dtype="int8", constant=False, scales=1):
    size = {"int8": 1, "int32": 4, "float32": 4, "float16": 2}[dtype]
    return TensorInfo(
        name=name,
        shape=shape,
        signature=shape,
        dtype=dtype,
        nbytes=math.prod(shape) * size,
        constant=constant,
        scales=scales,
        scale=0.5 if scales else None,
        zero_point=-1 if scales else None,
    )


def tiny_model(weights_dtype: str = "int8", input_dtype: str = "int8") -> ModelInfo:
    """input 1×4×4×1 -> CONV_2D (2 filters 3×3) -> FULLY_CONNECTED (10) -> SOFTMAX.

    MACs: 8 conv outputs × 9 + 10 dense outputs × 8 = 152. Parameters: 18 + 2 + 80 + 10 = 110.
    """
    tensors = (
        tensor("input", (1, 4, 4, 1), input_dtype),
        tensor("conv/w", (2, 3, 3, 1), weights_dtype, constant=True, scales=2),
        tensor("conv/b", (2,), "int32", constant=True, scales=2),
        tensor("conv/out", (1, 2, 2, 2), input_dtype),
        tensor("fc/w", (10, 8), weights_dtype, constant=True),
        tensor("fc/b", (10,), "int32", constant=True),
        tensor("fc/out", (1, 10), input_dtype),
        tensor("softmax", (1, 10), input_dtype),
    )
    return ModelInfo(
        schema_version=3,
        description="tiny",
        subgraphs=1,
        opcodes=(("CONV_2D", 3), ("FULLY_CONNECTED", 4), ("SOFTMAX", 2)),
        operators=(
            OperatorInfo("CONV_2D", 3, (0, 1, 2), (3,)),
            OperatorInfo("FULLY_CONNECTED", 4, (3, 4, 5), (6,)),
            OperatorInfo("SOFTMAX", 2, (6,), (7,)),
        ),
        tensors=tensors,
        inputs=(0,),
        outputs=(7,),
        min_runtime_metadata="1.14.0",
        tensorflow_version="2.21.0",
        converter_api=1,
        optimization_modes=("PTQ_FULL_INTEGER",),
    )

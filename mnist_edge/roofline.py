"""The roofline: the best MAC rate this CPU reaches on a large matrix multiply, measured in the
same run and on the same threads as the models it is set against.

The one-node ONNX models are written as protobuf bytes directly (a few fields of onnx.proto),
not with onnx.helper: the roofline must run on a device install, which has onnxruntime but not
the onnx package. A test checks the bytes against onnx.helper's where onnx is installed.
"""

from __future__ import annotations

import numpy as np

from mnist_edge.records import Roofline
from mnist_edge.runtimes.ort_runner import best_rate

ROOFLINE_SIZE = 1024  # 1024³ MACs per call: large enough to reach the kernels' peak
ONNX_FLOAT, ONNX_UINT8, ONNX_INT8, ONNX_INT32 = 1, 2, 3, 6  # TensorProto.DataType


def _proto_field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint, or length-delimited bytes."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            low, value = value & 0x7F, value >> 7
            out.append(low | (0x80 if value else 0))
            if not value:
                return bytes(out)

    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def matmul_model(op: str, a_type: int, b_type: int, y_type: int, size: int) -> bytes:
    """A one-node ONNX model, A[size×size] op B[size×size] -> Y, written as protobuf directly.

    Written by hand (a few fields of onnx.proto) so that the roofline needs no onnx package and
    runs on a device install too.
    """
    f = _proto_field

    def value_info(name: str, elem_type: int) -> bytes:
        dims = b"".join(f(1, f(1, size)) for _ in range(2))  # shape.dim[].dim_value
        return f(1, name.encode()) + f(2, f(1, f(1, elem_type) + f(2, dims)))

    node = f(1, b"A") + f(1, b"B") + f(2, b"Y") + f(4, op.encode())
    graph = (
        f(1, node)
        + f(2, b"roofline")
        + f(11, value_info("A", a_type))
        + f(11, value_info("B", b_type))
        + f(12, value_info("Y", y_type))
    )
    return f(1, 8) + f(7, graph) + f(8, f(1, b"") + f(2, 17))  # IR 8, opset 17


def measure_roofline(threads: int, size: int = ROOFLINE_SIZE) -> Roofline:
    """The MAC rate of a large float32 and int8 matrix multiply in onnxruntime, best of 10."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, size, size), dtype=np.float32)
    u8 = rng.integers(0, 255, (size, size), dtype=np.uint8)
    i8 = rng.integers(-127, 127, (size, size), dtype=np.int8)
    macs = size**3
    float32 = best_rate(
        matmul_model("MatMul", ONNX_FLOAT, ONNX_FLOAT, ONNX_FLOAT, size),
        {"A": a, "B": b},
        macs,
        threads,
    )
    int8 = best_rate(
        matmul_model("MatMulInteger", ONNX_UINT8, ONNX_INT8, ONNX_INT32, size),
        {"A": u8, "B": i8},
        macs,
        threads,
    )
    return Roofline(threads, float32, int8, size, "onnxruntime MatMul / MatMulInteger, best of 10")

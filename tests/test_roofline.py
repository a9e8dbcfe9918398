"""roofline: the hand-encoded one-node ONNX models are valid ONNX and compute a matmul."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.roofline import (
    ONNX_FLOAT,
    ONNX_INT8,
    ONNX_INT32,
    ONNX_UINT8,
    matmul_model,
    measure_roofline,
)
from mnist_edge.runtimes.ort_runner import ort_session


@pytest.mark.parametrize(
    "op, types",
    [("MatMul", (ONNX_FLOAT,) * 3), ("MatMulInteger", (ONNX_UINT8, ONNX_INT8, ONNX_INT32))],
)
def test_the_encoded_models_pass_onnx_checker_and_compute_the_product(op, types):
    onnx = pytest.importorskip("onnx")
    data = matmul_model(op, *types, 8)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == [op]
    rng = np.random.default_rng(0)
    if op == "MatMul":
        a, b = rng.standard_normal((2, 8, 8), dtype=np.float32)
        expected = a @ b
    else:
        a = rng.integers(0, 255, (8, 8), dtype=np.uint8)
        b = rng.integers(-127, 127, (8, 8), dtype=np.int8)
        expected = a.astype(np.int32) @ b.astype(np.int32)
    (y,) = ort_session(data).run(None, {"A": a, "B": b})
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_measure_roofline_reports_both_rates():
    roof = measure_roofline(threads=1, size=64)
    assert roof.float32_gmacs > 0 and roof.int8_gmacs > 0 and roof.threads == 1

"""The inputs of the device commands (mnist_edge.inputs): MNIST where the model takes it, seeded
random inputs over the input's range, .npy files checked against the model's input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mnist_edge.data import to_float
from mnist_edge.errors import MnistEdgeError
from mnist_edge.inputs import model_inputs, random_inputs
from mnist_edge.model_info import OperatorInfo, tensor_spec
from mnist_edge.tensors import dequantize, quantize
from tests.modelinfo_fixtures import tensor, tiny_model


def _with_input(shape: tuple[int, ...], dtype: str = "int8"):
    """The tiny model with another input tensor (shape, dtype)."""
    info = tiny_model()
    tensors = list(info.tensors)
    tensors[0] = tensor("input", shape, dtype)
    return replace(info, tensors=tuple(tensors))


def _float_input(quantize_op: bool = True):
    """A float32 input that a QUANTIZE turns into the int8 tensor the model computes on."""
    info = tiny_model()
    float_input = tensor("input_f32", (1, 4, 4, 1), "float32", scales=0)
    quantized = replace(tensor("input_q", (1, 4, 4, 1)), scale=0.25, zero_point=3)
    tensors = (*info.tensors, float_input, quantized)
    operators = info.operators
    if quantize_op:
        head = OperatorInfo("QUANTIZE", 1, (len(tensors) - 2,), (len(tensors) - 1,))
        operators = (head, *operators)
    return replace(info, tensors=tensors, operators=operators, inputs=(len(tensors) - 2,))


KWS_LIKE = _with_input((1, 49, 10, 1))


def test_random_inputs_are_seeded_and_cover_the_int8_range():
    first = model_inputs("random:500", KWS_LIKE, count=20, seed=7)
    again = model_inputs("random:500", KWS_LIKE, count=20, seed=7)
    other = model_inputs("random:500", KWS_LIKE, count=20, seed=8)
    assert first.values.shape == (500, 49, 10, 1) and first.values.dtype == np.int8
    assert first.values.tobytes() == again.values.tobytes()
    assert first.values.tobytes() != other.values.tobytes()
    assert (first.values.min(), first.values.max()) == (-128, 127)
    assert len(np.unique(first.values)) == 256
    assert first.labels is None and first.description == "random:500 (seed 7)"
    assert list(first.labels_or_none[:3]) == [255, 255, 255]
    # Without a count, the caller's (--images).
    assert model_inputs("random", KWS_LIKE, count=20, seed=7).count == 20


def test_random_float_inputs_quantize_back_to_the_int8_draw():
    info = _float_input()
    values = random_inputs(info, 200, seed=0)
    assert values.dtype == np.float32 and values.shape == (200, 4, 4, 1)
    target = tensor_spec(info, info.operators[0].outputs[0])
    q = quantize(values, target)
    # Each value is exactly one int8 step of the model's QUANTIZE: nothing is clipped away.
    assert np.array_equal(dequantize(q, target), values)
    assert (q.min(), q.max()) == (-128, 127)
    assert np.array_equal(q, random_inputs(_with_input((1, 4, 4, 1)), 200, seed=0))


def test_a_float_input_without_quantize_is_one_line():
    with pytest.raises(MnistEdgeError, match="no QUANTIZE to int8 reads.*pass a .npy file"):
        model_inputs("random:2", _float_input(quantize_op=False), count=2)


def test_mnist_is_the_default_where_the_model_takes_it(mnist):
    info = _with_input((1, 28, 28, 1))
    inputs = model_inputs(None, info, count=5)
    spec = tensor_spec(info, info.inputs[0])
    assert np.array_equal(inputs.values, quantize(to_float(mnist.x_test[:5]), spec))
    assert np.array_equal(inputs.labels, mnist.y_test[:5]) and inputs.mnist
    assert inputs.description == "MNIST test images 0..4"
    assert model_inputs("mnist:3", info, count=5).count == 3


def test_a_model_mnist_does_not_fit_asks_for_inputs():
    with pytest.raises(MnistEdgeError, match=r"kws.tflite takes \(1, 49, 10, 1\) int8 inputs, "):
        model_inputs(None, KWS_LIKE, count=20, origin="kws.tflite")
    with pytest.raises(MnistEdgeError, match="pass --inputs random:N .* or --inputs FILE.npy"):
        model_inputs("mnist:5", KWS_LIKE, count=20)


def test_npy_inputs_of_the_model_s_shape_and_dtype(tmp_path):
    values = np.arange(3 * 490, dtype=np.int64).reshape(3, 49, 10, 1).astype(np.int8)
    np.save(tmp_path / "x.npy", values)
    inputs = model_inputs(str(tmp_path / "x.npy"), KWS_LIKE, count=20)
    assert np.array_equal(inputs.values, values) and inputs.labels is None
    assert inputs.description == "x.npy (3)"


@pytest.mark.parametrize(
    "array, received",
    [
        (np.zeros((3, 49, 10, 1), np.float32), r"Received float32 \(3, 49, 10, 1\)"),
        (np.zeros((3, 49, 10), np.int8), r"Received int8 \(3, 49, 10\)"),
        (np.zeros((0, 49, 10, 1), np.int8), r"Received int8 \(0, 49, 10, 1\)"),
        (np.array([{"a": 1}], dtype=object), "cannot read it as .npy"),
    ],
)
def test_npy_inputs_that_do_not_fit_name_received_and_expected(tmp_path, array, received):
    np.save(tmp_path / "x.npy", array, allow_pickle=True)
    with pytest.raises(MnistEdgeError, match=received + r".*expected int8 \(N, 49, 10, 1\)"):
        model_inputs(str(tmp_path / "x.npy"), KWS_LIKE, count=20)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("random:0", "expected a count from 1"),
        ("random:many", "expected a count from 1"),
        ("noise:4", r"expected mnist\[:N\], random\[:N\] or a .npy file of \(1, 49, 10, 1\)"),
        ("missing.npy", "missing.npy: no such file"),
    ],
)
def test_bad_specs_are_one_line(spec, match):
    with pytest.raises(MnistEdgeError, match=match):
        model_inputs(spec, KWS_LIKE, count=20)


def test_an_input_dtype_other_than_int8_or_float32_is_refused():
    info = tiny_model()
    uint8 = replace(info.tensors[0], dtype="uint8")
    info = replace(info, tensors=(uint8, *info.tensors[1:]))
    with pytest.raises(MnistEdgeError, match="Received dtype uint8. Note: expected int8 or float"):
        model_inputs("random:2", info, count=2)

"""Runners: the same call shape, int8 I/O from the model's own parameters, clear load errors."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_edge.data import to_float
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.runtimes import LiteRTRunner, OrtRunner, open_runner
from mnist_edge.tensors import TensorSpec, dequantize, quantize

INT8 = TensorSpec("x", (-1, 28, 28, 1), "int8", scale=0.5, zero_point=-10)


def test_quantize_rounds_half_away_from_zero_and_clips():
    x = np.array([0.25, -0.25, 0.75, 100.0, -100.0], np.float32)
    # x / 0.5 = 0.5, -0.5, 1.5 -> 1, -1, 2 (numpy's round would give 0, -0, 2)
    assert quantize(x, INT8).tolist() == [-9, -11, -8, 127, -128]


def test_dequantize_inverts_quantize_on_grid():
    q = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(quantize(dequantize(q, INT8), INT8), q)


def test_float_spec_passes_through():
    spec = TensorSpec("x", (-1, 10), "float32")
    x = np.array([0.1, 0.2], np.float64)
    assert quantize(x, spec).dtype == np.float32
    assert np.allclose(dequantize(quantize(x, spec), spec), x)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "runtime"),
    [
        ("model_float32.tflite", "litert"),
        ("model_float32.tflite", "litert-ref"),
        ("model_int8.tflite", "litert"),
        ("model_int8.tflite", "litert-ref"),
        ("model.onnx", "onnxruntime"),
    ],
)
def test_every_runner_predicts_probabilities(exported, mnist, name, runtime):
    artifacts, _ = exported
    runner = open_runner(artifacts / name, runtime)
    probs = runner.predict(to_float(mnist.x_test[:700]), batch=256)  # uneven last batch
    assert probs.shape == (700, 10) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=0.05)
    assert np.mean(probs.argmax(1) == mnist.y_test[:700]) > 0.9


@pytest.mark.slow
def test_tflm_and_litert_reference_kernels_agree(exported, mnist):
    """TFLM and LiteRT without XNNPACK run (nearly) the same int8 kernels.

    Measured here: bit-identical on 2,000 of 2,000 images for the full 5-epoch model, but on
    99.9% for the quick model, the rest 1 LSB apart in one output; XNNPACK is off by more.
    """
    pytest.importorskip("tflite_micro")
    artifacts, _ = exported
    path = artifacts / "model_int8.tflite"
    images = to_float(mnist.x_test[:300])
    tflm = open_runner(path, "tflm")
    ref = LiteRTRunner(path, xnnpack=False)
    ref.set_batch(1)
    identical, worst = 0, 0
    for image in images:
        outputs = []
        for runner in (tflm, ref):
            runner.feed(image[None])
            runner.invoke()
            outputs.append(runner.fetch_raw().astype(np.int32))
        identical += np.array_equal(*outputs)
        worst = max(worst, int(np.abs(outputs[0] - outputs[1]).max()))
    assert identical >= 0.99 * len(images)
    assert worst <= 1


@pytest.mark.parametrize(
    ("payload", "runtime", "message"),
    [
        (b"", "litert", "LiteRT cannot load it"),
        (b"this is text, not a flatbuffer", "litert", "LiteRT cannot load it"),
        (b"this is text", "onnxruntime", "onnxruntime cannot load it"),
    ],
)
def test_bad_model_files_raise_model_error(tmp_path, payload, runtime, message):
    path = tmp_path / ("m.tflite" if runtime == "litert" else "m.onnx")
    path.write_bytes(payload)
    with pytest.raises(ModelError, match=message):
        open_runner(path, runtime)


@pytest.mark.slow
def test_truncated_tflite_is_refused(exported, tmp_path):
    artifacts, _ = exported
    path = tmp_path / "cut.tflite"
    path.write_bytes((artifacts / "model_int8.tflite").read_bytes()[:5000])
    with pytest.raises(ModelError, match="cut.tflite"):
        LiteRTRunner(path)


def test_runtime_must_fit_the_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"x")
    with pytest.raises(MnistEdgeError, match="cannot run a .onnx file with litert"):
        open_runner(path, "litert")
    with pytest.raises(ModelError, match="no such model file"):
        OrtRunner(tmp_path / "absent.onnx")


@pytest.mark.parametrize(
    ("model", "runtime"),
    [
        ("model_int8.tflite", "litert"),
        ("model_int8.tflite", "litert-ref"),
        ("model_int8_mcu.tflite", "litert-ref"),
        ("model_int8.tflite", "tflm"),
        ("model_float32.tflite", "litert"),
        ("model.onnx", "onnxruntime"),
    ],
)
def test_the_pixel_tables_give_the_same_bytes_as_the_float_path(exported, mnist, model, runtime):
    """feed_pixels (a 256-entry table) and fetch (another) against quantize and dequantize:
    every one of the 256 pixel values, then 200 test images end to end."""
    if runtime == "tflm":
        pytest.importorskip("tflite_micro")
    artifacts, _ = exported
    runner = open_runner(artifacts / model, runtime)
    every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    expected = quantize(to_float(every), runner.input).reshape(-1)
    assert np.array_equal(runner._input_table, expected)
    assert runner._input_table.dtype == expected.dtype
    if runner.output.quantized:
        raw = np.arange(256, dtype=np.uint8).view(runner.output.dtype)
        assert np.array_equal(runner._output_table, dequantize(raw, runner.output))
        # fetch indexes the byte-ordered table with the int8 values themselves (mode="wrap").
        wrapped = runner._output_table.take(raw, mode="wrap")
        assert np.array_equal(wrapped, dequantize(raw, runner.output))
    pixels = mnist.x_test[:200]
    step = runner.max_batch or 100
    for start in range(0, len(pixels), step):
        batch = pixels[start : start + step]
        runner.set_batch(len(batch))
        runner.feed(to_float(batch))
        runner.invoke()
        slow = dequantize(runner.fetch_raw(), runner.output)
        # N×28×28 and N×28×28×1 uint8, and pixels in a wider integer type (the table path).
        for layout in (batch, batch.reshape(-1, 28, 28, 1), batch.astype(np.int64)):
            runner.feed_pixels(layout)
            runner.invoke()
            fast = runner.fetch()
            assert fast.dtype == np.float32 and np.array_equal(fast, slow)


@pytest.mark.parametrize("xnnpack", [True, False])
def test_litert_pinned_buffers_follow_every_resize(exported, mnist, xnnpack):
    """feed_pixels and fetch write and read LiteRT's buffers in place once an invoke has run;
    a resize allocates anew, so the same calls must stay right across batch sizes that change
    back and forth, mixed with the set_tensor path (feed_raw)."""
    from mnist_edge.runtimes.litert_runner import LiteRTRunner

    artifacts, _ = exported
    model = artifacts / "model_int8.tflite"
    images = mnist.x_test[:128]
    expected = LiteRTRunner(model, xnnpack=xnnpack).predict(to_float(images))
    runner = LiteRTRunner(model, xnnpack=xnnpack)
    for n in (1, 64, 1, 3, 64, 5):
        runner.set_batch(n)
        for start in range(0, 2 * n, n):
            chunk = images[start : start + n]
            runner.feed_pixels(chunk)
            runner.invoke()
            assert np.array_equal(runner.fetch(), expected[start : start + n]), (n, start)
        runner.feed_raw(quantize(to_float(images[:n]), runner.input))
        runner.invoke()
        assert np.array_equal(runner.fetch(), expected[:n])

"""The C engine on graphs: MLPerf Tiny's reference models (nobody here wrote them), seeded
random models of every operator it compiles, and a float-input model of our own. Every output
byte is held against host TFLM's (the tflite-micro interpreter, reference kernels), on the
host's plain-C CMSIS-NN, in QEMU on the Cortex-M4 (DSP) and M55 (Helium), and under ASan and
UBSan with every arena byte outside each step's planned buffers poisoned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.codegen import generate
from mnist_edge.codegen.layers import Reference
from mnist_edge.codegen.plan import InPlaceStage, LayerStage
from mnist_edge.errors import MnistEdgeError
from tests.helpers import (
    REPO,
    SOURCES_DIR,
    need_module,
    needs_arm_tools,
    needs_sources,
    skip_or_fail,
)

MLPERF = REPO.parent / "shared" / "models" / "mlperf-tiny"
MODELS = {"IC": "pretrainedResnet_quant.tflite", "KWS": "kws_ref_model.tflite",
          "AD": "ad01_int8.tflite"}  # fmt: skip
needs_compiler = pytest.mark.needs_tools(("cc", "gcc"))


def mlperf(name: str) -> bytes:
    path = MLPERF / MODELS[name]
    if not path.is_file():
        skip_or_fail(f"MLPerf Tiny's models in {MLPERF}")
    return path.read_bytes()


def random_inputs(data: bytes, count: int, seed: int) -> np.ndarray:
    """Seeded inputs over the input's whole range: int8, or floats for a float model."""
    from mnist_edge.codegen.graph import read_graph

    graph = read_graph(data)
    rng = np.random.default_rng(seed)
    shape = (count, *graph.input.shape[1:])
    if graph.input.dtype == "float32":
        return rng.uniform(-4, 4, size=shape).astype(np.float32)
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def tflm_outputs(data: bytes, inputs: np.ndarray) -> np.ndarray:
    runtime = need_module("tflite_micro.python.tflite_micro.runtime", "micro")
    interpreter = runtime.Interpreter.from_bytes(data)
    outputs = []
    for x in inputs:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).copy())
    return np.stack(outputs)


def engine_outputs(data: bytes, inputs: np.ndarray, expected: np.ndarray) -> np.ndarray:
    from mnist_edge.codegen.host import build, load_library, run_batch

    engine = generate(data, "model")
    library = load_library(build(engine).path, engine.prefix)
    return run_batch(library, engine.prefix, inputs).view(expected.dtype).reshape(expected.shape)


def identical(data: bytes, count: int, seed: int = 0) -> tuple[int, int]:
    inputs = random_inputs(data, count, seed)
    expected = tflm_outputs(data, inputs)
    same = (engine_outputs(data, inputs, expected) == expected).all(axis=1)
    return int(same.sum()), count


def random_graph(seed: int) -> bytes:
    """A seeded random model of every operator the engine compiles, converted to int8 with
    a calibration range of random width (so scales and zero points vary with the seed)."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    size, channels = int(rng.integers(8, 17)), int(rng.choice([1, 3, 4, 8]))
    x_in = keras.Input((size, size + int(rng.integers(0, 4)), channels), batch_size=1)
    kernel = int(rng.choice([1, 3, 5]))
    padding = str(rng.choice(["same", "valid"]))
    activation = str(rng.choice(["relu", "relu6", "linear"]))
    stride = int(rng.integers(1, 3))
    x = layers.Conv2D(8, kernel, strides=stride, padding=padding, activation=activation)(x_in)
    branch = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=int(rng.integers(1, 3)))(x)
    branch = layers.Conv2D(8, 1, activation="relu")(branch)
    x = layers.Add()([x, branch])  # a residual
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(8, 3, dilation_rate=int(rng.integers(1, 3)), activation="relu")(x)
    x = layers.Concatenate()([layers.MaxPooling2D(2)(x), layers.AveragePooling2D(2)(x)])
    x = layers.Multiply()([x, layers.Activation("sigmoid")(x)])
    x = layers.GlobalAveragePooling2D()(x) if seed % 2 else layers.Flatten()(x)
    x = layers.Dense(10, activation="softmax" if seed % 2 else "sigmoid")(x)
    model = keras.Model(x_in, x)
    width = float(rng.uniform(0.5, 8))

    def calibration():
        for _ in range(20):
            yield [rng.uniform(-width, width, (1, *x_in.shape[1:])).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if seed % 2 == 0:  # even seeds int8 in and out, odd ones float (QUANTIZE, DEQUANTIZE)
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def sources():
    from mnist_edge.sources import prepare_sources

    prepare_sources(SOURCES_DIR)


@needs_sources
@needs_compiler
@pytest.mark.parametrize("name", list(MODELS))
def test_mlperf_tiny_models_are_bit_exact_on_the_host(name, sources):
    assert identical(mlperf(name), 200) == (200, 200)


@pytest.fixture(scope="module")
def graphs() -> dict[int, bytes]:
    need_module("tensorflow", "train")
    return {seed: random_graph(seed) for seed in range(4)}


@needs_sources
@needs_compiler
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_random_graphs_are_bit_exact_on_the_host(graphs, seed, sources):
    from mnist_edge.model_info import read_model

    operators = {op.op for op in read_model(graphs[seed], "graph").operators}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "LOGISTIC"} <= operators
    assert ("QUANTIZE" in operators) == (seed % 2 == 1)
    assert identical(graphs[seed], 200, seed) == (200, 200)


@needs_sources
@needs_arm_tools
@pytest.mark.slow
def test_random_graphs_are_bit_exact_on_the_m4_and_the_m55(graphs, tmp_path):
    """The DSP and Helium paths of the convolution and depthwise wrappers, the pools and the
    elementwise kernels, through the firmware command and its golden check."""
    model = tmp_path / "graph.tflite"
    model.write_bytes(graphs[0])
    command = [sys.executable, "-m", "mnist_edge", "firmware", "--model", str(model),
               "--inputs", "random:8", "--engine", "codegen", "--cpu", "cortex-m4", "--cpu",
               "cortex-m55", "--artifacts", str(tmp_path), "--sources", str(SOURCES_DIR),
               "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)["results"]
    assert {r["cpu"] for r in results} == {"cortex-m4", "cortex-m55"}
    assert all(r["golden_identical"] == r["golden_count"] == 8 for r in results), results


def run_harness(data: bytes, inputs: np.ndarray, folder: Path, plan_edit=None):
    import dataclasses

    from mnist_edge.codegen.host import build

    engine = generate(data, "model", optimise="size")
    if plan_edit:
        engine = dataclasses.replace(engine, plan=plan_edit(engine.plan))
    (folder / "inputs.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    harness = build(engine, sanitize=True).path
    return subprocess.run([str(harness), "inputs.bin", "outputs.bin"], cwd=folder,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip


@needs_sources
@needs_compiler
@pytest.mark.parametrize("name", ["IC", "KWS"])
def test_residuals_and_in_place_steps_hold_to_their_buffers_under_sanitizers(
    name, sources, tmp_path
):
    """IC's residual ADDs (written over an operand that dies there) and KWS's in-place
    convolutions, with every arena byte outside each step's buffers poisoned."""
    data = mlperf(name)
    inputs = random_inputs(data, 3, 1)
    done = run_harness(data, inputs, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr
    outputs = np.fromfile(tmp_path / "outputs.bin", dtype=np.int8).reshape(3, -1)
    assert (outputs == tflm_outputs(data, inputs)).all()


@needs_sources
@needs_compiler
def test_the_poisoning_catches_a_window_planned_away(sources, tmp_path):
    """The same harness fails when an in-place convolution's window is left out of the plan:
    the check above can fail."""
    import dataclasses

    data = mlperf("KWS")
    plan = generate(data, "model", optimise="size").plan
    window = next(s.window for s in plan.stages if isinstance(s, InPlaceStage))

    def without_window(plan):
        kept = tuple(r for r in plan.buffers if r.buffer != window)
        return dataclasses.replace(plan, buffers=kept)

    done = run_harness(data, random_inputs(data, 1, 0), tmp_path, without_window)
    assert done.returncode != 0 and "use-after-poison" in done.stderr


def test_the_plan_is_smaller_than_tflms_arena():
    """KWS: convolutions in place (TFLM's arena: 24,272 B); IC: the residual ADDs over an
    operand (55,984 B); both beneath 0.7 of TFLM's, from the plan alone."""
    kws, ic = (generate(mlperf(name), name, optimise="size").plan for name in ("KWS", "IC"))
    assert any(isinstance(s, InPlaceStage) for s in kws.stages)
    assert kws.peak_bytes < 0.7 * 24_272 and ic.peak_bytes < 0.7 * 55_984
    adds = [
        s for s in ic.stages if isinstance(s.layers[0], Reference) and s.layers[0].kind == "ADD"
    ]
    assert len(adds) == 3 and all(s.target in s.sources for s in adds)


def test_a_plan_for_speed_runs_cmsis_convolutions_whole_and_one_for_size_in_place():
    """KWS optimised for speed: no convolution in place, nothing streamed (CMSIS-NN's kernels
    pay their setup per call); for size: its eight depthwise and 1x1 convolutions in place."""
    data = mlperf("KWS")
    speed, size = (generate(data, "KWS", optimise=o).plan for o in ("speed", "size"))
    assert all(isinstance(s, LayerStage) for s in speed.stages)
    assert sum(isinstance(s, InPlaceStage) for s in size.stages) == 8
    assert size.peak_bytes < 0.7 * speed.peak_bytes


def test_a_plan_for_one_isa_sizes_the_scratch_its_kernels_ask_for():
    """KWS's 3x3 depthwise convolutions ask no scratch of CMSIS-NN's DSP and plain builds and
    4 * 124 * 9 bytes of its Helium build (arm_depthwise_conv_get_buffer_sizes_s8.c)."""
    data = mlperf("KWS")
    plans = {isa: generate(data, "KWS", isa=isa).plan for isa in ("plain", "dsp", "mve", "any")}
    depthwise = {
        isa: [s.scratch_bytes for s in plan.stages if s.layers[0].op == "DEPTHWISE_CONV_2D"]
        for isa, plan in plans.items()
    }
    assert depthwise["plain"] == depthwise["dsp"] == [0] * 4
    assert depthwise["mve"] == depthwise["any"] == [4 * 124 * 9] * 4
    assert plans["dsp"].peak_bytes < plans["mve"].peak_bytes == plans["any"].peak_bytes


@needs_sources
@needs_compiler
def test_model_c_planned_for_the_dsp_refuses_to_compile_without_it(sources):
    """An arena planned for one CMSIS-NN build is too small for another's scratch: model.c
    stops the compiler (here the host's, plain C) instead of letting a kernel overrun it."""
    from mnist_edge.codegen.host import build

    with pytest.raises(MnistEdgeError, match="plans its arena for CMSIS-NN's DSP build"):
        build(generate(mlperf("KWS"), "KWS", isa="dsp"))
    assert build(generate(mlperf("KWS"), "KWS", isa="plain")).path.exists()


@pytest.mark.slow
def test_an_unsupported_operator_is_one_line_and_exit_2(tmp_path):
    need_module("tensorflow", "train")
    import keras
    import tensorflow as tf

    x_in = keras.Input((4, 4, 2), batch_size=1)
    model = keras.Model(x_in, keras.layers.Activation("tanh")(keras.layers.Conv2D(2, 1)(x_in)))

    def calibration():
        for _ in range(4):
            yield [np.random.default_rng(0).uniform(-1, 1, (1, 4, 4, 2)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "tanh.tflite"
    path.write_bytes(converter.convert())
    command = [sys.executable, "-m", "mnist_edge", "verify", "-r", "codegen", "--model",
               str(path), "--inputs", "random:2", "--artifacts", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "TANH" in lines[0] and "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    """A model as a Keras user writes one, with float input and output (QUANTIZE, DEQUANTIZE),
    a residual ADD, a branch joined by CONCATENATION, GlobalAveragePooling2D (MEAN) and a
    sigmoid (LOGISTIC)."""
    need_module("tensorflow", "train")
    import keras
    import tensorflow as tf

    x_in = keras.Input((12, 10, 2), batch_size=1)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x_in)
    y = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = keras.layers.Add()([x, y])
    left = keras.layers.MaxPooling2D(2)(x)
    right = keras.layers.AveragePooling2D(2)(keras.layers.Conv2D(4, 1)(x))
    x = keras.layers.Concatenate()([left, right])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(x_in, keras.layers.Dense(3, activation="sigmoid")(x))

    def calibration():
        rng = np.random.default_rng(0)
        for _ in range(16):
            yield [rng.uniform(-1, 1, (1, 12, 10, 2)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path_factory.mktemp("float-model") / "ours.tflite"
    path.write_bytes(converter.convert())
    from mnist_edge.codegen.graph import read_graph

    ops = {layer.op for layer in read_graph(path.read_bytes(), path.name).layers}
    assert {"QUANTIZE", "DEQUANTIZE", "ADD", "CONCATENATION", "MEAN", "LOGISTIC"} <= ops
    return path


@pytest.mark.slow
@needs_sources
def test_a_float_model_of_our_own_verifies_bit_identical(float_model, tmp_path):
    """`verify -r codegen --inputs random:1000`: each float output's bytes against host
    TFLM's."""
    command = [sys.executable, "-m", "mnist_edge", "verify", "-r", "codegen", "--inputs",
               "random:1000", "-m", str(float_model), "--artifacts", str(tmp_path)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "identity.json").read_text())["results"]
    assert row["agreement"]["bit_identical"] == row["agreement"]["images"] == 1000


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_a_float_model_of_our_own_runs_on_both_engines_on_the_m4(float_model, tmp_path):
    """Both engines take and give the float32 bytes on the M4 (TFLM's library: cached)."""
    command = [sys.executable, "-m", "mnist_edge", "firmware", "--model", str(float_model),
               "--inputs", "random:3", "--engine", "all", "--cpu", "cortex-m4", "--sources",
               str(SOURCES_DIR), "--out", str(tmp_path / "fw"), "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)["results"]
    assert {r["engine"] for r in results} == {"tflm", "codegen"}
    assert all(r["golden_identical"] == r["golden_count"] == 3 for r in results)

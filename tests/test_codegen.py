"""The C engine (mnist_edge.codegen): generated C99 + CMSIS-NN, checked against TFLM on every
one of the 10,000 MNIST test images, in Python (ctypes) and in an ASan+UBSan harness.

Everything runs for real: the quick model's MCU-lean export, a second small CNN trained here
(other filter counts, same padding, per-channel and per-tensor), the host's C compiler, and
CMSIS-NN from the pinned archives ($MNIST_EDGE_FIRMWARE_SOURCES or ../shared/third_party).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mnist_edge.codegen import generate
from mnist_edge.codegen.graph import read_graph
from mnist_edge.codegen.plan import LEVELS, MemoryPlan, plan_memory
from mnist_edge.codegen.quant import quantize_multiplier, softmax_parameters
from mnist_edge.errors import MissingDependencyError, ModelError
from tests.conftest import TflmOutputs
from tests.helpers import SOURCES_DIR, need_module, needs_sources

TEST_IMAGES = 10_000
SANITIZED_IMAGES = 2_000


def identical(outputs: np.ndarray, expected: TflmOutputs) -> int:
    """Images whose every output byte equals TFLM's."""
    got = outputs.reshape(len(expected.outputs), -1)
    return int((got == expected.outputs.reshape(got.shape)).all(axis=1).sum())


@pytest.fixture(scope="module")
def sources():
    """CMSIS-NN checked and extracted once into the test cache: later builds (sources=None)
    find it there, as a user's second build finds it in theirs."""
    from mnist_edge.sources import prepare_sources

    prepare_sources(SOURCES_DIR)


@pytest.fixture(scope="module")
def mcu(exported, tflm_reference) -> TflmOutputs:
    """The quick model's MCU-lean export and TFLM's outputs on every test image."""
    artifacts, _ = exported
    return tflm_reference(artifacts / "model_int8_mcu.tflite")


def small_cnn(mnist):
    """Another CNN than the seed's: 8 and 16 filters, a same-padded convolution, dense 24."""
    import keras

    from mnist_edge.data import to_float

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(24, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(to_float(mnist.x_train[:2000]), mnist.y_train[:2000], epochs=1, verbose=0)
    return model


def convert_per_tensor(model, calibration: np.ndarray) -> bytes:
    """export.convert_tflite_int8(batch=1), but one scale per weight tensor (TFLite's old
    default), which export has no switch for: the per-tensor kernels' path."""
    import keras
    import tensorflow as tf

    from mnist_edge.data import to_float

    inputs = keras.Input(batch_shape=(1, *calibration.shape[1:], 1))
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, model(inputs)))
    images = to_float(calibration)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel = True
    return converter.convert()


@pytest.fixture(scope="module")
def small_models(mnist, tmp_path_factory) -> dict[str, Path]:
    """The small CNN trained one epoch on 2,000 images, as two int8 batch-1 models."""
    from mnist_edge.export import convert_tflite_int8
    from mnist_edge.files import stdout_to_stderr

    folder = tmp_path_factory.mktemp("small_cnn")
    model = small_cnn(mnist)
    with stdout_to_stderr():
        models = {
            "per-channel": convert_tflite_int8(model, mnist.x_train[:100], batch=1),
            "per-tensor": convert_per_tensor(model, mnist.x_train[:100]),
        }
    for name, data in models.items():
        (folder / f"{name}.tflite").write_bytes(data)
    return {name: folder / f"{name}.tflite" for name in models}


def live_overlaps(plan: MemoryPlan, offsets: dict[str, int] | None = None) -> list[tuple]:
    """Pairs of arena buffers alive in a common step whose bytes meet (none in a valid plan)."""
    rows = [r for r in plan.rows() if r.offset is not None]
    at = {r.buffer: r.offset for r in rows} | (offsets or {})
    found = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            alive = a.first_step <= b.last_step and b.first_step <= a.last_step
            meet = at[a.buffer] < at[b.buffer] + b.bytes and at[b.buffer] < at[a.buffer] + a.bytes
            if alive and meet:
                found.append((a.buffer, b.buffer))
    return found


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"), "nm")
def test_bit_identical_with_tflm_on_every_test_image(mcu, sources):
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    runner = CodegenRunner(mcu.path)
    assert identical(runner.predict_raw(mcu.inputs), mcu) == TEST_IMAGES
    # One image at a time agrees with batches of 500.
    assert identical(runner.predict_raw(mcu.inputs[:50], batch=1), golden_slice(mcu, 50)) == 50
    described = runner.describe()
    assert described["runtime"] == "codegen" and described["plan"] == "streamed"
    # The arena the library really holds (its `arena` symbol in the built ELF) is the end of
    # the plan's highest buffer, word-aligned, and no two buffers alive together share a byte.
    plan = runner.generated.plan
    highest = max(r.offset + r.bytes for r in plan.rows() if r.offset is not None)
    assert symbol_size(Path(described["library"]), "arena") == -(-highest // 4) * 4
    assert described["arena_bytes"] == -(-highest // 4) * 4 and live_overlaps(plan) == []


def symbol_size(library: Path, name: str) -> int:
    """The size of a symbol of a built ELF, as binutils' nm reads it."""
    done = subprocess.run(
        ["nm", "-S", "--defined-only", str(library)], capture_output=True, text=True, check=True
    )
    sizes = [
        int(line.split()[1], 16) for line in done.stdout.splitlines() if line.endswith(f" {name}")
    ]
    assert len(sizes) == 1, done.stdout[-2000:]
    return sizes[0]


def golden_slice(g: TflmOutputs, n: int) -> TflmOutputs:
    return dataclasses.replace(g, inputs=g.inputs[:n], outputs=g.outputs[:n])


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.slow
@pytest.mark.parametrize("quantized", ["per-channel", "per-tensor"])
def test_other_shapes_are_bit_identical_too(small_models, tflm_reference, sources, quantized):
    from mnist_edge.codegen.graph import Conv2D, FullyConnected
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    expected = tflm_reference(small_models[quantized])
    layers = read_graph(expected.data).layers
    convs = [x for x in layers if isinstance(x, Conv2D)]
    dense = [x for x in layers if isinstance(x, FullyConnected)]
    assert [c.padding_kind for c in convs] == ["VALID", "SAME"]
    assert [c.weights.shape[0] for c in convs] == [8, 16] and dense[0].weights.shape[0] == 24
    per_channel = quantized == "per-channel"
    assert all((len(x.weight_scales) > 1) == per_channel for x in convs + dense)
    runner = CodegenRunner(expected.path)
    assert runner.generated.plan.level == "streamed"
    assert identical(runner.predict_raw(expected.inputs), expected) == TEST_IMAGES
    # The other plan levels: fused slices over whole tensors, and one call per layer (the own
    # kernel without a pool, over same padding too).
    for level in sorted(set(LEVELS) - {"streamed"}):
        assert identical(run_level(expected, level), expected) == TEST_IMAGES, level


def run_level(model: TflmOutputs, level: str) -> np.ndarray:
    """The engine generated with a plan level, built for the host, on every input."""
    from mnist_edge.codegen.host import build, load_library, run_batch

    engine = generate(model.data, model.path.name, level=level)
    return run_batch(load_library(build(engine).path, engine.prefix), engine.prefix, model.inputs)


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.parametrize("level", sorted(set(LEVELS) - {"streamed"}))  # streamed: above
def test_every_plan_level_is_bit_identical_too(mcu, sources, level):
    # The own kernel's other calls: fused slices whose input is a whole tensor, and one call
    # per layer (no pool: every row of the convolution, two outputs at a time).
    assert identical(run_level(mcu, level), mcu) == TEST_IMAGES


def test_own_kernel_takes_the_convolutions_cmsis_nn_is_slow_on(exported):
    artifacts, _ = exported
    engine = generate((artifacts / "model_int8_mcu.tflite").read_bytes(), "model_int8_mcu.tflite")
    source, kernels = (engine.files[name].decode() for name in ("model.c", "kernels.h"))
    assert '#include "kernels.h"' in source and "Do not edit by hand" in kernels
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    # conv_0 (one input channel) and conv_2 (32) by slices fused with their pools, conv_4
    # (64, no pool) in one call; CMSIS-NN's convolution and pool only inside kernels.h (Helium).
    assert "edge_slice(&conv_0, &maxpool_1," in code and "edge_slice(&conv_2, &maxpool_3," in code
    assert "edge_conv_s8(&ctx, &conv_4.params" in code
    assert "arm_convolve_s8(" not in code and "arm_max_pool_s8(" not in code
    # The kernel pools as it goes: no buffer of convolution rows, and the same arena: 5,824 B,
    # the streamed plan's as published (README's bundle example and Measured table, commits
    # ac1289d and aa02c25). The plan follows from the layers' shapes alone, not the trained
    # weights, so the ceiling has no margin: more is the planner's regression. Re-measure:
    # mnist-edge bundle prints "The C engine's memory plan (streamed): one static arena of N B".
    assert not [row for row in engine.plan.rows() if row.buffer.endswith("_rows")]
    assert engine.arena_bytes <= 5_824
    assert "Source/NNSupportFunctions/arm_s8_to_s16_unordered_with_offset.c" in (
        engine.cmsis_sources
    )


def test_own_kernel_only_where_pooling_before_requantizing_is_exact(exported):
    from mnist_edge.codegen.kernels import edge_applies

    artifacts, _ = exported
    conv_0, pool_1, conv_2, pool_3 = read_graph(
        (artifacts / "model_int8_mcu.tflite").read_bytes()
    ).layers[:4]
    assert edge_applies(conv_0, pool_1) and edge_applies(conv_2, pool_3)
    # Alone, a one-channel convolution goes to CMSIS-NN (the kernel's gain is pooling as it
    # goes); a four-channel multiple does not need a pool.
    assert not edge_applies(conv_0, None) and edge_applies(conv_2, None)
    # An accumulator that could overflow: the maximum of requantized values would not be the
    # requantized maximum, so CMSIS-NN computes that layer.
    huge = dataclasses.replace(conv_0, bias=np.full_like(conv_0.bias, 2**31 - 1))
    assert not edge_applies(huge, pool_1)
    # A pool window of more than 4 outputs, or 3 input channels: not the kernel's layouts.
    assert not edge_applies(conv_2, dataclasses.replace(pool_3, window=(3, 3)))
    three = dataclasses.replace(
        conv_2,
        input=dataclasses.replace(conv_2.input, shape=(1, 13, 13, 3)),
        weights=conv_2.weights[..., :3],
    )
    assert not edge_applies(three, pool_3)


ARM_CPUS = {
    "cortex-m0": ("-mcpu=cortex-m0", "-mthumb", "-mfloat-abi=soft"),
    "cortex-m4": ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
    "cortex-m55": ("-mcpu=cortex-m55", "-mthumb", "-mfpu=auto", "-mfloat-abi=hard"),
}


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.needs_tools("arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", sorted(ARM_CPUS))
def test_generated_c_is_warning_free_for_each_kernel_path(exported, sources, cpu, tmp_path):
    # kernels.h's three paths: plain C (M0), DSP (M4), Helium (M55); every plan level.
    from mnist_edge.codegen.host import ENGINE_FLAGS, cmsis_root

    artifacts, _ = exported
    data = (artifacts / "model_int8_mcu.tflite").read_bytes()
    include = ["-I", str(cmsis_root() / "Include")]
    for level in LEVELS:
        folder = tmp_path / level
        folder.mkdir()
        for name, text in generate(data, "model_int8_mcu.tflite", level=level).files.items():
            (folder / name).write_bytes(text)
        command = ["arm-none-eabi-gcc", *ARM_CPUS[cpu], *ENGINE_FLAGS, *include, "-c", "model.c"]
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]


def test_plan_keeps_live_buffers_apart_and_beats_the_lower_bound(exported):
    need_module("tflite_micro", "micro")
    from mnist_edge.runtimes.tflm_runner import TFLM_DEFAULT_ARENA, tflm_allocation

    artifacts, _ = exported
    data = (artifacts / "model_int8_mcu.tflite").read_bytes()
    graph = read_graph(data, "model_int8_mcu.tflite")
    plans = {level: plan_memory(graph, level) for level in LEVELS}
    for plan in plans.values():
        assert live_overlaps(plan) == []
        assert all(r.offset % 4 == 0 for r in plan.rows() if r.offset is not None)
        assert plan.peak_bytes >= max(
            r.offset + r.bytes for r in plan.rows() if r.offset is not None
        )
    bound = plans["layers"].lower_bound_bytes
    assert plans["layers"].peak_bytes >= bound
    assert plans["streamed"].peak_bytes < plans["fused"].peak_bytes < bound
    # The seed CNN: the fused plan holds the pooled 13x13x32 whole, streaming does not.
    assert bound == 26 * 26 * 32 + 13 * 13 * 32
    # Ceilings at the figures measured on the seed CNN, which depend on its layers' shapes
    # only (any model trained on its recipe plans the same): streamed 5,824 B as published
    # (README, commit ac1289d), fused 9,568 B (not published; measured by this plan_memory
    # at commit aa02c25). No margin: more bytes is the planner's regression, fewer a reason to
    # lower the pin. Re-measure: print(plan_memory(read_graph(data), level).peak_bytes).
    assert plans["fused"].peak_bytes <= 9_568 and plans["streamed"].peak_bytes <= 5_824
    head, tail = tflm_allocation(data, TFLM_DEFAULT_ARENA)
    assert plans["streamed"].peak_bytes < head + tail


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.parametrize("level", LEVELS)
def test_generated_c_is_strict_c99_with_what_a_caller_needs(exported, sources, level):
    from mnist_edge.codegen.host import ENGINE_FLAGS, check_c99
    from mnist_edge.files import sha256_bytes

    artifacts, _ = exported
    data = (artifacts / "model_int8_mcu.tflite").read_bytes()
    engine = generate(data, "model_int8_mcu.tflite", level=level)
    check_c99(engine)  # -std=c99 -Wall -Wextra -Werror: MnistEdgeError on any warning
    assert {"-std=c99", "-Wall", "-Wextra", "-Werror"} <= set(ENGINE_FLAGS)
    header, source = (engine.files[name].decode() for name in ("model.h", "model.c"))
    for text in (header, source):
        assert sha256_bytes(data) in text and "Do not edit by hand" in text
    assert "#define MNIST_EDGE_INPUT_BYTES 784" in header
    assert "#define MNIST_EDGE_OUTPUT_BYTES 10" in header
    assert f"#define MNIST_EDGE_ARENA_BYTES {engine.plan.peak_bytes}" in header
    assert "int mnist_edge_infer(const int8_t *input, int8_t *output);" in header
    code = re.sub(r"/\*.*?\*/", "", source, flags=re.S)  # the C without its comments
    assert not re.search(r"malloc|printf|stdio\.h|\bfloat\b|\bdouble\b", code)
    # One static buffer: every other file-scope object is const (functions aside).
    assert re.findall(r"^static (?!const)[\w ]+?\b(\w+)\s*[\[=;]", code, re.M) == ["arena"]
    for row in engine.plan.rows():
        if row.offset is not None:
            assert f"#define {row.buffer.upper()} {row.offset} " in source
    # Every step's call is preceded by a comment naming its layers.
    for k, phase in enumerate(engine.plan.steps):
        assert re.search(rf"Steps? (\d+-)?{k}\b", source), phase


def run_harness(harness: Path, inputs: np.ndarray, folder: Path) -> subprocess.CompletedProcess:
    (folder / "inputs.bin").write_bytes(np.ascontiguousarray(inputs).tobytes())
    return subprocess.run(
        [str(harness), "inputs.bin", "outputs.bin"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
def test_sanitized_harness_runs_images_clean_and_bit_exact(mcu, sources, tmp_path):
    """The first 2,000 test images under ASan/UBSan (the plan is static: every image takes the
    same steps; all 10,000 are compared unsanitized above, in a fifth of the time)."""
    from mnist_edge.codegen.host import build

    engine = generate(mcu.data, mcu.path.name)
    harness = build(engine, sanitize=True).path
    done = run_harness(harness, mcu.inputs[:SANITIZED_IMAGES], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runtime error" not in done.stderr and "Sanitizer" not in done.stderr
    assert done.stdout.strip() == f"{SANITIZED_IMAGES} images"
    outputs = np.fromfile(tmp_path / "outputs.bin", dtype=np.int8).reshape(SANITIZED_IMAGES, -1)
    assert (outputs == mcu.outputs[:SANITIZED_IMAGES].reshape(outputs.shape)).all()


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
def test_sanitized_harness_holds_every_step_to_its_planned_buffers(mcu, sources, tmp_path):
    from mnist_edge.codegen.host import build

    engine = generate(mcu.data, mcu.path.name)
    # Plan conv_2's scratch out of existence: the harness poisons those bytes for step 1,
    # where the convolution (mnist-edge's own kernel) still writes its columns there.
    plan = engine.plan
    kept = tuple(r for r in plan.buffers if r.buffer != "conv_2_scratch")
    wrong = dataclasses.replace(engine, plan=dataclasses.replace(plan, buffers=kept))
    done = run_harness(build(wrong, sanitize=True).path, mcu.inputs[:2], tmp_path)
    assert done.returncode != 0
    assert "use-after-poison" in done.stderr and "edge_conv_s8" in done.stderr


def corrupt_weight(source: str, array: str, index: int, value: int) -> str:
    """model.c with one value of a constant array replaced."""
    match = re.search(rf"{array}\[\d+\] ALIGNED\(4\) = {{\n(.*?)\n}};", source, re.S)
    assert match, array
    values = [v.strip() for v in match.group(1).replace("\n", " ").split(",") if v.strip()]
    values[index] = str(value)
    body = "\n".join(
        "    " + ", ".join(values[i : i + 16]) + "," for i in range(0, len(values), 16)
    )
    return source[: match.start(1)] + body + source[match.end(1) :]


def move_offset(source: str, plan: MemoryPlan, moved: str, onto: str) -> str:
    """model.c with buffer `moved` at the arena offset of buffer `onto`."""
    offsets = {r.buffer: r.offset for r in plan.rows()}
    assert offsets[moved] is not None and offsets[onto] is not None
    define = f"#define {moved.upper()} "
    return source.replace(f"{define}{offsets[moved]} ", f"{define}{offsets[onto]} ")


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.parametrize("mutation", ["weight", "offset"])
def test_golden_comparison_catches_a_mutated_engine(mcu, sources, mutation):
    from mnist_edge.codegen.host import build, load_library, run_batch

    engine = generate(mcu.data, mcu.path.name)
    source = engine.files["model.c"].decode()
    if mutation == "weight":
        # The first layer's strongest weight, negated: every image reads it.
        weights = read_graph(mcu.data).layers[0].weights.reshape(-1)
        strongest = int(np.abs(weights.astype(int)).argmax())
        value = max(-int(weights[strongest]), -127)
        mutated = corrupt_weight(source, "conv_0_weights", strongest, value)
    else:
        # The streamed loop's output moved onto its window, both alive across its iterations:
        # each pooled row written overwrites window rows the next iterations read.
        moved, onto = "maxpool_3_out", "maxpool_1_window"
        assert live_overlaps(engine.plan, {moved: engine.plan.offset(onto)})
        mutated = move_offset(source, engine.plan, moved, onto)
    assert mutated != source
    broken = dataclasses.replace(engine, files={**engine.files, "model.c": mutated.encode()})
    library = load_library(build(broken).path, engine.prefix)
    assert identical(run_batch(library, engine.prefix, mcu.inputs), mcu) < TEST_IMAGES


def test_unsupported_operators_are_refused_in_one_line(exported):
    artifacts, _ = exported
    dynamic_batch = (artifacts / "model_int8.tflite").read_bytes()
    with pytest.raises(ModelError, match="operators SHAPE, .* not supported by the C engine") as e:
        generate(dynamic_batch, "model_int8.tflite")
    message = str(e.value)
    assert "\n" not in message and message.startswith("model_int8.tflite: ")
    assert "model_int8_mcu.tflite" in message  # what to export instead
    float_model = (artifacts / "model_float32.tflite").read_bytes()
    with pytest.raises(ModelError, match="compiles int8 models; this one is float32"):
        generate(float_model, "model_float32.tflite")


def test_runner_refuses_what_it_cannot_run(exported, monkeypatch, tmp_path):
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    artifacts, _ = exported
    with pytest.raises(ModelError, match="SHAPE"):
        CodegenRunner(artifacts / "model_int8.tflite")
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler on it
    with pytest.raises(MissingDependencyError, match="No C compiler"):
        CodegenRunner(artifacts / "model_int8_mcu.tflite")


def test_quantize_multiplier_is_tflms():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    # A mantissa that rounds up to 1.0 is halved, its shift one more.
    assert quantize_multiplier((2**31 - 0.25) / 2**31) == (1 << 30, 1)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # shift below -31: flushed to zero
    # The seed CNN's softmax, as TFLM's SoftmaxPrepare computes it (FIRMWARE.md).
    assert softmax_parameters(1.0, 0.13782191276550293) == (1183881216, 24, -124)


@given(st.floats(min_value=2.0**-30, max_value=2.0**20, allow_nan=False))
def test_quantized_multipliers_are_within_half_a_step(real):
    multiplier, shift = quantize_multiplier(real)
    assert 1 << 30 <= multiplier < 1 << 31
    assert abs(multiplier * 2.0 ** (shift - 31) - real) <= 2.0 ** (shift - 32)

"""reference.py and templates/reference.h against TFLM: every operator TFLM runs with its own
reference code, over seeded random shapes, quantizations and inputs.

Each case is a one-operator .tflite written here with the flatbuffer schema (the scales and zero
points are then whatever the case draws, which a converter would not give), run by the
tflite-micro interpreter (its reference kernels); the same operator's parameters come from
reference.py, its C from `c_call`, compiled with the host's gcc into one library with every
case, called through ctypes. Every output byte is compared (a float output's every bit).
"""

from __future__ import annotations

import ctypes
import dataclasses
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.codegen import reference
from mnist_edge.errors import ModelError
from tests.helpers import REPO, need_module, needs_arm_tools, needs_sources

need_module("tflite_micro", "micro")
import flatbuffers  # noqa: E402  (tflite-micro's dependency)
from tflite_micro import runtime  # noqa: E402
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema  # noqa: E402

TEMPLATES = REPO / "mnist_edge" / "codegen" / "templates"
TYPES = {
    "int8": (schema.TensorType.INT8, np.int8, "int8_t"),
    "float32": (schema.TensorType.FLOAT32, np.float32, "float"),
    "int32": (schema.TensorType.INT32, np.int32, "int32_t"),
}
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
STRICT = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
# On the host, any undefined behaviour of the kernels stops the run.
SANITIZE = ("-fsanitize=undefined", "-fno-sanitize-recover=all")


@dataclass(frozen=True)
class Spec:
    """A tensor of a one-operator model (reference.Tensor's fields)."""

    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0
    dtype: str = "int8"


@dataclass(frozen=True)
class Case:
    op: str
    inputs: tuple[Spec, ...]
    output: Spec
    options: dict = field(default_factory=dict)  # the parameter function's keywords
    constants: tuple = ()  # (array, Spec) appended to the operator's inputs
    builtin: tuple = (0, None)  # (BuiltinOptions type, options object)


def scale(rng, low=-3.0, high=0.0) -> float:
    return float(np.float32(10 ** rng.uniform(low, high)))


def q(rng, shape, dtype="int8", **kw) -> Spec:
    return Spec(tuple(int(d) for d in shape), scale(rng, **kw), int(rng.integers(-128, 128)), dtype)


def near(rng, spec: Spec, shape_, low=-0.3, high=0.3, dtype="int8") -> Spec:
    """A tensor whose scale is the given one's times 10^U(low, high), zero point near 0."""
    factor = 10 ** rng.uniform(low, high)
    return Spec(
        tuple(shape_), float(np.float32(spec.scale * factor)), int(rng.integers(-40, 40)), dtype
    )


def shape(rng, rank, high=5) -> tuple[int, ...]:
    return tuple(int(d) for d in rng.integers(1, high + 1, size=rank))


def mean_cases(rng):
    axes_choices = [(1, 2), (2, 1), (-3, -2), (1,), (2,), (3,), (1, 2, 3), (0, 1)]
    for k in range(32):
        source = q(rng, (int(rng.integers(1, 3)), *shape(rng, 3, 9)))
        if k == 0:  # a 24x24 pool: the 1/576 folded into the multiplier borrows 9 bits
            source = dataclasses.replace(source, shape=(1, 24, 24, 3))
        axes = axes_choices[k % len(axes_choices)]
        keep = bool(k % 2)
        resolved = {a % 4 for a in axes}
        kept = [1 if i in resolved else d for i, d in enumerate(source.shape)]
        out = kept if keep else [d for i, d in enumerate(kept) if i not in resolved]
        axis = np.array(axes, np.int32)
        yield Case(
            "MEAN",
            (source,),
            near(rng, source, out),
            {"axes": axes, "keep_dims": keep},
            ((axis, Spec(axis.shape, dtype="int32")),),
            (schema.BuiltinOptions.ReducerOptions, schema.ReducerOptionsT(keepDims=keep)),
        )


def concatenation_cases(rng):
    for _ in range(16):
        rank = int(rng.integers(1, 5))
        axis = int(rng.integers(-rank, rank))
        common = q(rng, shape(rng, rank))
        parts = [
            common.shape[: axis % rank]
            + (int(rng.integers(1, 4)),)
            + common.shape[axis % rank + 1 :]
            for _ in range(int(rng.integers(2, 5)))
        ]
        inputs = tuple(dataclasses.replace(common, shape=p) for p in parts)
        out = list(common.shape)
        out[axis % rank] = sum(p[axis % rank] for p in parts)
        options = schema.ConcatenationOptionsT(axis=axis)
        yield Case(
            "CONCATENATION",
            inputs,
            dataclasses.replace(common, shape=tuple(out)),
            {"axis": axis},
            (),
            (schema.BuiltinOptions.ConcatenationOptions, options),
        )


def unary_cases(rng):
    """Elementwise operators: 256 values or more, so that every int8 input value is tried."""
    for _ in range(24):
        source = q(rng, (1, 16, 16, int(rng.integers(1, 3))), low=-3, high=0.5)
        yield Case("LOGISTIC", (source,), Spec(source.shape, 1 / 256, -128))
    for _ in range(12):
        out = q(rng, (*shape(rng, 2, 8), 32))
        yield Case("QUANTIZE", (Spec(out.shape, dtype="float32"),), out)
        yield Case("QUANTIZE", (near(rng, out, out.shape, -1, 1),), out)
    for _ in range(10):
        source = q(rng, (1, 16, 16, int(rng.integers(1, 3))))
        yield Case("DEQUANTIZE", (source,), Spec(source.shape, dtype="float32"))
        yield Case("RELU", (source,), near(rng, source, source.shape))
        yield Case("RELU6", (source,), dataclasses.replace(source, zero_point=-128))


def arithmetic_cases(rng):
    for k in range(64):
        op = ("ADD", "MUL")[k % 2]
        out = shape(rng, int(rng.integers(1, 7)), 4)
        if k % 8 < 2:  # equal shapes: CMSIS-NN's elementwise kernel
            first = second = out
        else:
            first = tuple(d if rng.random() < 0.5 else 1 for d in out)
            second = tuple(
                d if f == 1 or rng.random() < 0.5 else 1 for d, f in zip(out, first, strict=True)
            )
            second = second[int(rng.integers(0, len(second))) :]  # a lower rank, extended by 1s
            extended = (1,) * (len(first) - len(second)) + second
            out = tuple(max(f, s) for f, s in zip(first, extended, strict=True))
        activation = list(ACTIVATIONS)[k // 2 % 4]
        options = (schema.AddOptionsT if op == "ADD" else schema.MulOptionsT)()
        options.fusedActivationFunction = ACTIVATIONS[activation]
        kind = schema.BuiltinOptions.AddOptions if op == "ADD" else schema.BuiltinOptions.MulOptions
        one = q(rng, first)
        two = near(rng, one, second, -1, 1)
        both = Spec((), one.scale * two.scale * 100 if op == "MUL" else max(one.scale, two.scale))
        yield Case(
            op,
            (one, two),
            near(rng, both, out, 0, 0.6),
            {"activation": activation},
            (),
            (kind, options),
        )


def pad_cases(rng):
    for k in range(24):
        rank = 5 if k == 11 else int(rng.integers(1, 5))
        source = q(rng, (1, *shape(rng, 4)) if rank == 5 else shape(rng, rank))
        pairs = rng.integers(0, 3, size=(rank, 2)).astype(np.int32)
        if rank == 5:
            pairs[0] = 0
        out = dataclasses.replace(source, shape=tuple(int(d) for d in source.shape + pairs.sum(1)))
        constants = ((pairs, Spec(pairs.shape, dtype="int32")),)
        options = {"paddings": pairs.tolist()}
        if k % 2:
            value = np.array([rng.integers(-128, 128)], np.int8)
            constants += ((value, dataclasses.replace(out, shape=(1,))),)
            options["constant"] = (int(value[0]), out.scale, out.zero_point)
            yield Case(
                "PADV2",
                (source,),
                out,
                options,
                constants,
                (schema.BuiltinOptions.PadV2Options, schema.PadV2OptionsT()),
            )
        else:
            yield Case(
                "PAD",
                (source,),
                out,
                options,
                constants,
                (schema.BuiltinOptions.PadOptions, schema.PadOptionsT()),
            )


def all_cases() -> list[Case]:
    rng = np.random.default_rng(20261215)
    makers = (mean_cases, concatenation_cases, unary_cases, arithmetic_cases, pad_cases)
    return [case for make in makers for case in make(rng)]


def tensor(spec: Spec, buffer: int):
    t = schema.TensorT()
    t.shape, t.type, t.buffer = list(spec.shape), TYPES[spec.dtype][0], buffer
    if spec.dtype == "int8":
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [spec.scale], [spec.zero_point]
    return t


def model_bytes(case: Case) -> bytes:
    """The one-operator .tflite of a case."""
    buffers, tensors = [schema.BufferT()], []
    for spec in case.inputs:
        tensors.append(tensor(spec, 0))
    for array, spec in case.constants:
        buffers.append(schema.BufferT())
        buffers[-1].data = list(np.ascontiguousarray(array).tobytes())
        tensors.append(tensor(spec, len(buffers) - 1))
    tensors.append(tensor(case.output, 0))
    code = getattr(schema.BuiltinOperator, case.op)
    opcode = schema.OperatorCodeT(deprecatedBuiltinCode=min(code, 127), builtinCode=code)
    op = schema.OperatorT()
    op.inputs, op.outputs = list(range(len(tensors) - 1)), [len(tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = case.builtin
    graph = schema.SubGraphT()
    graph.tensors, graph.operators = tensors, [op]
    graph.inputs, graph.outputs = list(range(len(case.inputs))), [len(tensors) - 1]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = (
        3,
        [opcode],
        [graph],
        buffers,
    )
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def random_input(rng, spec: Spec, output: Spec) -> np.ndarray:
    if spec.dtype == "int8":  # every value once before any twice
        values = np.resize(rng.permutation(256) - 128, int(np.prod(spec.shape)))
        return values.reshape(spec.shape).astype(np.int8)
    # Around the output's range, with halves of its scale where rounding decides.
    steps = rng.integers(-140, 140, size=spec.shape) - output.zero_point
    steps = steps + rng.choice([0.0, 0.5, 0.37], spec.shape)
    return (steps * output.scale).astype(np.float32)


def tflm_output(case: Case, inputs: list[np.ndarray]) -> np.ndarray:
    interpreter = runtime.Interpreter.from_bytes(model_bytes(case), arena_size=1 << 18)
    for i, array in enumerate(inputs):
        interpreter.set_input(array, i)
    interpreter.invoke()
    return interpreter.get_output(0)


def c_source(cases: list[tuple[str, Case, object]]) -> str:
    """One C function a case, `void NAME(const void *const *inputs, void *output)`."""
    parts = ['#include "reference.h"\n#include "arm_nnfunctions.h"\n']
    for name, case, params in cases:
        sources = [f"(const {TYPES[s.dtype][2]} *)inputs[{i}]" for i, s in enumerate(case.inputs)]
        target = f"({TYPES[case.output.dtype][2]} *)output"
        constants, call = reference.c_call(params, sources, target, name)
        parts.append(
            f"{constants}void {name}(const void *const *inputs, void *output);\n"
            f"void {name}(const void *const *inputs, void *output)\n{{\n{call}}}\n"
        )
    return "\n".join(parts)


def cmsis_files(root: Path) -> list[Path]:
    wanted = {f for sources in reference.CMSIS_SOURCES.values() for f in sources}
    return [root / f for f in sorted(wanted)]


def build(source: str, folder: Path) -> ctypes.CDLL:
    """The cases as a shared library: ours strict, CMSIS-NN's with its own warnings off."""
    from mnist_edge.codegen.host import cmsis_root

    root = cmsis_root()
    (folder / "cases.c").write_text(source)
    objects = []
    for path in [folder / "cases.c", *cmsis_files(root)]:
        objects.append(folder / f"{path.stem}.o")
        flags = (*STRICT, *SANITIZE) if path.parent == folder else ("-O2", "-w")
        subprocess.run(
            [
                "gcc",
                *flags,
                "-fPIC",
                "-c",
                f"-I{TEMPLATES}",
                f"-I{root / 'Include'}",
                str(path),
                "-o",
                str(objects[-1]),
            ],
            check=True,
        )
    library = folder / "cases.so"
    subprocess.run(
        ["gcc", "-shared", *SANITIZE, *map(str, objects), "-o", str(library)], check=True
    )
    return ctypes.CDLL(str(library))


def c_output(library, name: str, case: Case, inputs: list[np.ndarray]) -> np.ndarray:
    arrays = [np.ascontiguousarray(a) for a in inputs]
    pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
    out = np.full(case.output.shape, 0x55, dtype=TYPES[case.output.dtype][1])
    getattr(library, name)(pointers, ctypes.c_void_p(out.ctypes.data))
    return out


def named_cases() -> list[tuple[str, Case, object]]:
    """Every case with its C name and its parameters from reference.SUPPORTED."""
    return [
        (f"case{k}", c, reference.SUPPORTED[c.op](list(c.inputs), c.output, **c.options))
        for k, c in enumerate(all_cases())
    ]


def wrong(params):
    """MEAN's parameters with the output zero point one off: every byte not clamped differs."""
    return dataclasses.replace(params, output_zero_point=params.output_zero_point + 1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(case, TFLM's output, the C's output) per case, and the same for a wrong MEAN."""
    rng = np.random.default_rng(7)
    named = named_cases()
    largest = max((n for n in named if n[1].op == "MEAN"), key=lambda n: n[2].outer * n[2].inner)
    named.append(("wrong_mean", largest[1], wrong(largest[2])))
    library = build(c_source(named), tmp_path_factory.mktemp("reference"))
    results = []
    for name, case, _ in named:
        inputs = [random_input(rng, spec, case.output) for spec in case.inputs]
        results.append(
            (name, case, tflm_output(case, inputs), c_output(library, name, case, inputs))
        )
    return results


def mismatches(expected: np.ndarray, actual: np.ndarray) -> int:
    """Output bytes that differ (floats compared bit for bit)."""
    assert expected.shape == actual.shape and expected.dtype == actual.dtype
    return int((expected.view(np.uint8) != actual.view(np.uint8)).sum())


@needs_sources
@pytest.mark.parametrize("op", sorted(reference.SUPPORTED))
def test_each_operator_is_bit_exact_with_tflm(runs, op):
    mine = [r for r in runs if r[1].op == op and r[0] != "wrong_mean"]
    assert len(mine) >= 6, op
    wrong_bytes = {name: mismatches(expected, actual) for name, _, expected, actual in mine}
    assert not any(wrong_bytes.values()), wrong_bytes
    assert sum(e.size for _, _, e, _ in mine) > 100


@needs_sources
def test_broadcasting_and_equal_shapes_are_both_covered(runs):
    kinds = {
        (c.op, c.inputs[0].shape == c.inputs[1].shape)
        for _, c, _, _ in runs
        if len(c.inputs) == 2 and c.op != "CONCATENATION"
    }  # noqa: E501
    assert kinds == {("ADD", True), ("ADD", False), ("MUL", True), ("MUL", False)}


@needs_sources
def test_the_comparison_sees_a_wrong_parameter(runs):
    ((_, _, expected, actual),) = [r for r in runs if r[0] == "wrong_mean"]
    assert mismatches(expected, actual) > 0


@needs_sources
@needs_arm_tools
@pytest.mark.parametrize(
    "cpu",
    [
        ("-mcpu=cortex-m0", "-mthumb"),
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
    ],
    ids=["cortex-m0", "cortex-m4"],
)
def test_the_generated_calls_compile_warning_free_for_cortex_m(tmp_path, cpu):
    from mnist_edge.codegen.host import cmsis_root

    named = named_cases()
    (tmp_path / "cases.c").write_text(c_source(named))
    done = subprocess.run(
        [
            "arm-none-eabi-gcc",
            *STRICT,
            *cpu,
            "-c",
            f"-I{TEMPLATES}",
            f"-I{cmsis_root() / 'Include'}",
            "cases.c",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def spec(shape_, scale_=0.05, zero_point=0, dtype="int8") -> Spec:
    return Spec(shape_, scale_, zero_point, dtype)


@pytest.mark.parametrize(
    ("op", "inputs", "output", "options", "match"),
    [
        ("MEAN", [spec((1, 4, 4, 8))], spec((1, 4, 1)), {"axes": (1, 3)}, "adjacent axes"),
        (
            "CONCATENATION",
            [spec((1, 2)), spec((1, 2), 0.1)],
            spec((1, 4)),
            {"axis": 1},
            "requires them equal",
        ),
        ("LOGISTIC", [spec((4,))], spec((4,), 1 / 256, 0), {}, "requires -128"),
        ("ADD", [spec((2, 3)), spec((3, 3))], spec((3, 3)), {}, "do not broadcast"),
        ("ADD", [spec((3,)), spec((3,))], spec((3,), 1e-9), {}, "in \\(0, 1\\)"),
        (
            "PAD",
            [spec((2, 1, 1, 1, 1))],
            spec((2, 1, 1, 1, 3)),
            {"paddings": [[0, 0]] * 4 + [[1, 1]]},
            "takes 4-D",
        ),
        ("DEQUANTIZE", [spec((4,), dtype="int32")], spec((4,), dtype="float32"), {}, "int32"),
        ("MUL", [spec((1,) * 7), spec((1,) * 7)], spec((1,) * 7), {}, "up to 6-D"),
    ],
)
def test_what_tflm_refuses_is_one_line(op, inputs, output, options, match):
    with pytest.raises(ModelError, match=match) as raised:
        reference.SUPPORTED[op](inputs, output, **options)
    assert "\n" not in str(raised.value)


def keras_model_bytes() -> bytes:
    """A Keras model made of the reference operators, converted to int8 with float input and
    output (QUANTIZE, DEQUANTIZE) from a random representative set of a wide range."""
    tf = need_module("tensorflow", "train")
    keras = tf.keras
    image = keras.Input((6, 6, 4), batch_size=1)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(image)
    scaled = keras.layers.Activation("sigmoid")(keras.layers.Multiply()([image, pooled]))
    padded = keras.layers.ZeroPadding2D(((1, 0), (2, 1)))(scaled)
    flat = keras.layers.Concatenate()(
        [
            keras.layers.GlobalAveragePooling2D()(padded),
            keras.layers.GlobalAveragePooling2D()(image),
        ]
    )
    summed = keras.layers.Add()([keras.layers.ReLU()(flat), keras.layers.ReLU(6.0)(flat)])
    model = keras.Model(image, summed)
    rng = np.random.default_rng(3)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-4, 9, (1, 6, 6, 4)).astype(np.float32)] for _ in range(32)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(converter.convert())


def read_operators(data: bytes):
    """(TFLM name, input Specs, output Spec, options, flatbuffer tensor indices) per operator."""
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v[0]: k for k, v in TYPES.items()}

    def spec(index):
        t = graph.tensors[index]
        quant = t.quantization
        scale_ = float(quant.scale[0]) if quant is not None and quant.scale is not None else 0.0
        zp = int(quant.zeroPoint[0]) if quant is not None and quant.zeroPoint is not None else 0
        return Spec(tuple(int(d) for d in t.shape), scale_, zp, dtypes[t.type])

    def constant(index):
        t = graph.tensors[index]
        data_ = bytes(bytearray(model.buffers[t.buffer].data))
        return np.frombuffer(data_, TYPES[dtypes[t.type]][1]).reshape(t.shape)

    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        activations = [i for i in op.inputs if model.buffers[graph.tensors[i].buffer].data is None]
        options = {}
        fused = getattr(op.builtinOptions, "fusedActivationFunction", 0)
        activation = {v: k for k, v in ACTIVATIONS.items()}[fused]
        if name == "MEAN":
            options = {
                "axes": constant(op.inputs[1]).tolist(),
                "keep_dims": op.builtinOptions.keepDims,
            }
        elif name == "CONCATENATION":
            options = {"axis": op.builtinOptions.axis, "activation": activation}
        elif name in ("ADD", "MUL"):
            options = {"activation": activation}
        elif name in ("PAD", "PADV2"):
            options = {"paddings": constant(op.inputs[1]).tolist()}
        specs = [spec(i) for i in activations]
        yield name, specs, spec(op.outputs[0]), options, (activations, op.outputs[0])


def tensor_data(interpreter, index: int) -> np.ndarray:
    """An intermediate tensor TFLM preserved (GetTensor gives its dtype, shape and data)."""
    found = interpreter.GetTensor(index, 0)
    return np.asarray(found["tensor_data"], dtype=found["dtype"]).reshape(found["shape"])


@needs_sources
def test_a_converted_keras_model_is_bit_exact_operator_by_operator(tmp_path):
    """Each operator of a real converter's model, fed TFLM's own intermediate tensors."""
    data = keras_model_bytes()
    interpreter = runtime.Interpreter.from_bytes(
        data, arena_size=1 << 18, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
    )
    image = np.random.default_rng(5).uniform(-4, 9, (1, 6, 6, 4)).astype(np.float32)
    interpreter.set_input(image, 0)
    interpreter.invoke()
    named, tensors = [], []
    for k, (op, inputs, output, options, indices) in enumerate(read_operators(data)):
        if op not in reference.SUPPORTED:  # RESHAPE: the lead's
            continue
        params = reference.SUPPORTED[op](inputs, output, **options)
        named.append((f"op{k}", Case(op, tuple(inputs), output, options), params))
        tensors.append(indices)
    seen = {case.op for _, case, _ in named}
    assert set(reference.SUPPORTED) - {"PADV2"} == seen
    library = build(c_source(named), tmp_path)
    wrong_bytes = {}
    for (name, case, _), (sources, target) in zip(named, tensors, strict=True):
        inputs = [tensor_data(interpreter, i) for i in sources]
        expected = tensor_data(interpreter, target)
        wrong_bytes[f"{name} {case.op}"] = mismatches(
            expected, c_output(library, name, case, inputs)
        )
    assert not any(wrong_bytes.values()), wrong_bytes

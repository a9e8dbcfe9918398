"""The C engine's own convolution kernel (codegen/templates/kernels.h, edge_conv_s8) against
CMSIS-NN's arm_convolve_s8 and arm_max_pool_s8 on seeded random layers: on the host (its
plain-C path, under AddressSanitizer), and in QEMU on a Cortex-M4 (the DSP path) and a
Cortex-M55 (Helium), each against CMSIS-NN built for the same CPU.

Each random layer goes through the generator's own decisions: whether it calls the kernel at
all (kernels.edge_applies, with its check that requantization is monotonic), how it slices
the layer into calls (stages.slices_of: the convolution rows under each pooled row, whatever the
pool's height, stride and padding; one row; or the whole layer), and the scratch it gives
each call (kernels.edge_scratch_bytes). The C side (tests/kernels/kernel_cases.c) makes
those calls and checks each one: the bytes where the generator calls the kernel, the refusal
of shapes it does not take, and every CMSIS-NN return code.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

HARNESS = Path(__file__).parent / "kernels"
CASES = 2000  # about 2 s in QEMU for each board, with its build
SUMMARY = re.compile(
    r"cases (\d+) calls (\d+) matched (\d+) refused (\d+) unsafe (\d+) differ (\d+) bad (\d+) "
    r"checksum ([0-9a-f]{8}) path (\w+)"
)
# Our C is held to this; CMSIS-NN's sources are not ours to fix (as codegen/host.py builds).
STRICT = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
CMSIS = ("-std=gnu11", "-O2", "-w")
# Overflowing requantization is part of the test (the layers the generator refuses).
SANITIZE = (
    "-fsanitize=address,undefined",
    "-fno-sanitize=signed-integer-overflow",
    "-fno-sanitize-recover=all",
)


@dataclass(frozen=True)
class Summary:
    """kernel_cases.c's last line: what the calls did, and a checksum of the matched bytes."""

    cases: int
    calls: int
    matched: int
    refused: int
    unsafe: int
    differ: int
    bad: int
    checksum: str
    path: str  # kernels.h's: plain, dsp, helium


def _pool_count(size: int, window: int, stride: int, pad: int, rng: np.random.Generator) -> int:
    """Pooled outputs along one axis: every window meets the convolution's output; usually
    all of them (the last ones clipped by the edge), sometimes fewer (TFLM's VALID)."""
    most = (size - 1 + pad) // stride + 1
    return most if rng.random() < 0.7 else int(rng.integers(1, most + 1))


def _requantization(rng: np.random.Generator, cout: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel scales (the input's and output's are 1.0) and biases: mostly what TFLM
    derives from a trained model, multipliers of 2^-16 to 2^2; else large left shifts, some
    negative multipliers and large biases, which can overflow or run backwards, so the
    generator must refuse the layer."""
    if rng.random() < 0.7:
        exponents = rng.integers(-17, 2, cout)
        signs = np.ones(cout)
        bias = rng.integers(-3000, 3000, cout)
    else:
        exponents = rng.integers(-6, 14, cout)
        signs = np.where(rng.random(cout) < 0.25, -1.0, 1.0)
        bias = rng.integers(-(2**20), 2**20, cout)
    return signs * rng.uniform(0.5, 1.0, cout) * 2.0**exponents, bias.astype(np.int32)


def random_layer(rng: np.random.Generator):
    """A random convolution (and maybe its max-pool) as codegen's graph holds one, or None
    when the shapes leave no output."""
    from mnist_edge.codegen.graph import Activation, Conv2D, MaxPool2D

    cin = int(rng.choice([1, 1, 1, 4, 8, 12, 3]))  # 3: a layout the kernel refuses
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    (sh, sw), (dh, dw) = ((int(a), int(b)) for a, b in rng.integers(1, 3, (2, 2)))
    if cin == 1 and rng.random() < 0.15:  # up to 81 taps: more than 64 are refused
        (kh, kw), (dh, dw) = (int(v) for v in rng.integers(5, 10, 2)), (1, 1)
    ph, pw = (int(v) for v in rng.integers(0, 2, 2))
    in_h = int(rng.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), dh * (kh - 1) + 10))
    in_w = int(rng.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), dw * (kw - 1) + 12))
    conv_h = (in_h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    conv_w = (in_w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if conv_h < 1 or conv_w < 1:
        return None
    cout, zero_point, out_zero = (
        int(rng.integers(1, 21)),
        *(int(v) for v in rng.integers(-128, 128, 2)),
    )
    scales, bias = _requantization(rng, cout)
    conv = Conv2D(
        index=0,
        input=Activation(0, "input", (1, in_h, in_w, cin), 1.0, zero_point),
        output=Activation(1, "conv", (1, conv_h, conv_w, cout), 1.0, out_zero),
        weights=rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8),
        bias=bias,
        weight_scales=tuple(float(s) for s in scales),
        stride=(sh, sw),
        dilation=(dh, dw),
        padding=(ph, pw),
        padding_kind="VALID",
        activation="NONE",
    )
    if rng.random() >= 0.6:
        return conv, None, rng.random() < 0.5  # no pool: row by row, or the whole layer
    (wh, ww), (psh, psw) = ((int(a), int(b)) for a, b in rng.integers(1, 4, (2, 2)))
    pph, ppw = int(rng.integers(0, wh)), int(rng.integers(0, ww))
    out_h = _pool_count(conv_h, wh, psh, pph, rng)
    out_w = _pool_count(conv_w, ww, psw, ppw, rng)
    pool = MaxPool2D(
        index=1,
        input=conv.output,
        output=Activation(2, "pool", (1, out_h, out_w, cout), 1.0, out_zero),
        window=(wh, ww),
        stride=(psh, psw),
        padding=(pph, ppw),
        padding_kind="VALID",
        activation="NONE",
    )
    return conv, pool, False


def _clamp(rng: np.random.Generator) -> list[int]:
    """An activation's int8 range: all of it, or a random part (a ReLU, a ReLU6)."""
    if rng.random() < 0.5:
        return [-128, 127]
    low = int(rng.integers(-128, 100))
    return [low, int(rng.integers(low, 128))]


def takes(conv, pool, conv_rows: int) -> bool:
    """Whether edge_conv_s8 takes a call (kernels.h's edge_conv_s8_takes): one input channel
    with at most 64 taps, or input channels 4k pooled by windows of at most 4 outputs."""
    from mnist_edge.codegen.kernels import BLOCK, MAX_TAPS

    kh, kw = conv.kernel
    cin = conv.input.shape[3]
    if cin == 1:
        return kh * kw <= MAX_TAPS
    return cin % 4 == 0 and (pool is None or pool.window[1] * conv_rows <= BLOCK)


@dataclass(frozen=True)
class Case:
    """One layer's words for kernel_cases.c, and what the generator decided about it."""

    words: list[int]
    generated: bool  # edge_applies: the generator calls the kernel on this layer
    monotonic: bool
    uneven: bool  # a call's convolution rows are not the pool window's height


def random_case(rng: np.random.Generator) -> Case | None:
    """One layer through the generator's decisions, as kernel_cases.c reads it."""
    from mnist_edge.codegen import quant
    from mnist_edge.codegen.kernels import (
        edge_applies,
        edge_scratch_bytes,
        requantization_is_monotonic,
    )
    from mnist_edge.codegen.stages import Slice, slices_of

    layer = random_layer(rng)
    if layer is None:
        return None
    conv, pool, whole = layer
    (_, in_h, in_w, cin), (_, conv_h, conv_w, cout) = conv.input.shape, conv.output.shape
    kh, kw = conv.kernel
    calls = (Slice(0, in_h, conv.padding[0], conv_h),) if whole else slices_of(conv, pool)
    accepted = [takes(conv, pool, call.conv_rows) for call in calls]
    generated = edge_applies(conv, pool)
    # The generator never calls the kernel with a shape the kernel refuses.
    assert all(accepted) or not generated
    mults, shifts = quant.channel_multipliers(1.0, conv.weight_scales, 1.0, cout)
    words = [in_h, in_w, cin, cout, kh, kw, *conv.stride, *conv.padding, *conv.dilation]
    words += [-conv.input.zero_point, conv.output.zero_point, *_clamp(rng), conv_h, conv_w]
    if pool is None:
        words += [0, 0, 0, 0, 0, 0, 0, -128, 127, conv_h, conv_w]
    else:
        words += [1, *pool.window, *pool.stride, *pool.padding, *_clamp(rng)]
        words += pool.output.shape[1:3]
    monotonic = requantization_is_monotonic(conv)
    scratch = edge_scratch_bytes(conv, pool, [call.conv_rows for call in calls])
    words += [int(monotonic), scratch, len(calls)]
    for call, takes_it in zip(calls, accepted, strict=True):
        words += [call.in_row, call.in_rows, call.conv_pad, call.conv_rows, int(not takes_it)]
    inputs = rng.integers(-128, 128, in_h * in_w * cin)
    for part in (inputs, conv.weights.ravel(), conv.bias, mults, shifts):
        words += [int(v) for v in part]
    uneven = pool is not None and any(call.conv_rows != pool.window[0] for call in calls)
    return Case(words, generated, monotonic, uneven)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[list[Case], Path]:
    """The seeded random layers (the same every run), and the file kernel_cases.c reads."""
    rng, found = np.random.default_rng(21), []
    while len(found) < CASES:
        found += [case] if (case := random_case(rng)) else []
    path = tmp_path_factory.mktemp("kernel-cases") / "cases.bin"
    words = [len(found), *(word for case in found for word in case.words)]
    path.write_bytes(np.array(words, "<i4").tobytes())
    return found, path


def run(command: list[str], folder: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done


def build(compiler: str, flags: list[str], link: list[str], own: list[Path], folder: Path) -> Path:
    """kernel_cases: kernels.h from its template, CMSIS-NN's sources it needs (with their
    flags), ours (STRICT); `flags` for all of them."""
    from mnist_edge.codegen.cmsis import CONV_SOURCES
    from mnist_edge.codegen.emit import POOL_SOURCES, template
    from mnist_edge.codegen.host import cmsis_root
    from mnist_edge.codegen.kernels import GENERAL_SOURCES

    fields = {"version": "test", "PREFIX": "TEST"}
    (folder / "kernels.h").write_text(template("kernels.h").substitute(fields))
    root = cmsis_root()
    cmsis = [str(root / s) for s in dict.fromkeys(CONV_SOURCES + POOL_SOURCES + GENERAL_SOURCES)]
    include = ["-I", str(folder), "-I", str(root / "Include")]
    for sources, strict in ((cmsis, CMSIS), ([str(p) for p in own], STRICT)):
        run([compiler, *strict, *flags, *include, "-c", *sources], folder)
    objects = sorted(str(p) for p in folder.glob("*.o"))
    run([compiler, *flags, *objects, *link, "-o", "kernel_cases"], folder)
    return folder / "kernel_cases"


def summary(done: subprocess.CompletedProcess) -> Summary:
    """The last line's figures; the whole output in the assertion if there is none."""
    found = SUMMARY.search(done.stdout)
    assert found, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    figures = found.groups()
    return Summary(*(int(v) for v in figures[:-2]), *figures[-2:])


@pytest.fixture(scope="module")
def plain(cases, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Summary]:
    """The cases through the harness built for the host (the plain-C path), with
    AddressSanitizer and UBSan."""
    from mnist_edge.codegen.host import find_compiler
    from mnist_edge.sources import prepare_sources

    prepare_sources(SOURCES_DIR)
    folder = tmp_path_factory.mktemp("kernels-host")
    program = build(find_compiler(), list(SANITIZE), [], [HARNESS / "kernel_cases.c"], folder)
    done = subprocess.run(
        [str(program), str(cases[1])], capture_output=True, text=True, timeout=300
    )
    return done, summary(done)


@needs_sources
@pytest.mark.needs_tools(("cc", "gcc"))
def test_own_kernel_matches_cmsis_nn_on_random_layers(cases, plain):
    # The plain-C path: 1, 3 and 4k input channels, 1x1 to 9x9 taps, strides, padding,
    # dilation, pools of 1 to 3 rows and columns clipped at any edge, rows without a pool.
    done, result = plain
    assert (done.returncode, result.bad, result.path) == (0, 0, "plain"), done.stdout[-3000:]
    assert done.stderr == ""  # nothing from the sanitizers
    assert result.cases == len(cases[0]) == CASES
    # Every kind of call happened: matched bytes, refused shapes, and calls the generator
    # would not make (requantization not monotonic), of which some really differ: the
    # generator's check is what keeps pooling before requantizing exact.
    assert result.matched > 3000 and result.refused > 1000 and result.unsafe > 1000
    assert result.differ > 20
    # (Fewer since one-channel and 1x1 layers without a pool went to CMSIS-NN's kernels.)
    assert sum(case.generated for case in cases[0]) > 700
    assert sum(not case.monotonic for case in cases[0]) > 400
    assert sum(case.uneven for case in cases[0]) > 600


def build_for_board(cpu: str, folder: Path) -> Path:
    """The harness for a QEMU board (boards.py's flags and memory), with newlib's
    semihosting (rdimon) for stdio."""
    from mnist_edge.firmware.boards import BOARDS

    board = BOARDS[cpu]
    symbols = {
        "CODE_ORIGIN": board.code.origin,
        "CODE_LENGTH": board.code.length,
        "RAM_ORIGIN": board.data.origin,
        "RAM_LENGTH": board.data.length,
    }
    flags = [*board.cpu_flags, "-ffunction-sections", "-fdata-sections"]
    link = ["--specs=nano.specs", "--specs=rdimon.specs", "-nostartfiles"]
    link += ["-T", str(HARNESS / "board.ld"), "-Wl,--gc-sections"]
    link += [f"-Wl,--defsym={name}={value:#x}" for name, value in symbols.items()]
    own = [HARNESS / "kernel_cases.c", HARNESS / "startup.c"]
    return build(f"{board.gcc_prefix}gcc", flags, link, own, folder)


@needs_sources
@needs_arm_tools
@pytest.mark.needs_tools(("cc", "gcc"))
@pytest.mark.parametrize(("cpu", "path"), [("cortex-m4", "dsp"), ("cortex-m55", "helium")])
def test_own_kernel_matches_cmsis_nn_on_the_boards(cases, plain, cpu, path, tmp_path):
    # The DSP path (SMLAD, LDRD) on the M4, Helium's (VMLADAVA; CMSIS-NN's vector
    # convolution for 4k channels) on the M55: the same cases against CMSIS-NN built for the
    # same CPU, and the matched bytes the same as the host's plain C.
    from mnist_edge.firmware.boards import BOARDS

    board = BOARDS[cpu]
    elf = build_for_board(cpu, tmp_path)
    command = [board.qemu, "-M", board.machine, "-nographic", "-monitor", "none", "-serial"]
    command += ["none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    # The harness opens cases.bin where QEMU runs; a fault ends it with status 3.
    done = subprocess.run(command, cwd=cases[1].parent, capture_output=True, text=True, timeout=120)
    result = summary(done)
    assert (done.returncode, result.bad, result.path) == (0, 0, path), done.stdout[-3000:]
    host = plain[1]
    assert (result.cases, result.calls, result.matched) == (host.cases, host.calls, host.matched)
    assert result.checksum == host.checksum
    assert result.refused == host.refused and result.unsafe == host.unsafe

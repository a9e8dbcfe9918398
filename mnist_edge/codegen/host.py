"""Build the generated engine with the host's C compiler: a shared library, or a sanitized
executable harness.

CMSIS-NN compiles as plain C on any host (no ARM_MATH_DSP, no Helium), so the very C a
microcontroller runs can be checked here against TFLM on all 10,000 test images. Our files
(model.c and the glue) build with `-std=c99 -Wall -Wextra -Werror`; CMSIS-NN's sources with
flags of their own, as a firmware build would. Builds are cached by a hash of everything that
goes in (sources, CMSIS-NN's pinned tree, compiler version, flags), each made in a temporary
folder and renamed into place, so a reader never sees half a build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.codegen import GeneratedEngine
from mnist_edge.codegen.emit import template
from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.files import cache_dir

# Our files: strict C99, every warning an error.
ENGINE_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror")
# CMSIS-NN's sources are not ours to fix: their own defaults, warnings off. -O3 lets GCC
# vectorize its plain-C loops (4x faster on x86 than -O2, same results: integer code).
CMSIS_FLAGS = ("-O3", "-w")
# Double rounding (TFLM's default) stays: CMSIS_NN_USE_SINGLE_ROUNDING is never defined.
COMMON_FLAGS = ("-fPIC",)
SANITIZE_FLAGS = (
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
)
# CMSIS-NN left-shifts negative numbers on purpose (its softmax's fixed-point exp): C99 calls
# that undefined, GCC and Arm's compilers define it as the arithmetic shift it is meant to be.
# Only that check is off, and only for CMSIS-NN's own files.
CMSIS_SANITIZE_FLAGS = (*SANITIZE_FLAGS, "-fno-sanitize=shift-base")
# The convolutions' inner GEMM kernel runs nearly every multiply: with every read checked it
# cannot vectorize and 10,000 images take a minute, not 6 s. Its writes stay checked; its
# reads (the weights, and the im2col columns arm_convolve_s8 writes, checked, into scratch)
# do not: a read out of bounds there shows up as a wrong output in the golden comparison.
GEMM_KERNEL = "arm_nn_mat_mult_kernel_s8_s16.c"
GEMM_SANITIZE_FLAGS = ("-fsanitize=address", "--param=asan-instrument-reads=0", "-g")
LIBRARY = "libengine.so"
HARNESS = "harness"
BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class HostBuild:
    """A built engine: the library or harness, and what it was built from and with."""

    path: Path
    compiler: str
    flags: tuple[str, ...]  # model.c's (CMSIS-NN's own files have theirs)
    cached: bool


def find_compiler() -> str:
    """The host's C compiler (cc, else gcc); MissingDependencyError if there is none."""
    for name in ("cc", "gcc"):
        found = shutil.which(name)
        if found:
            return found
    raise MissingDependencyError(
        "No C compiler (cc or gcc) on PATH: the C engine is built with one. Install it "
        "(Debian/Ubuntu: apt-get install gcc)."
    )


def compiler_version(compiler: str) -> str:
    """The compiler's first line of `--version`, part of every build's cache key."""
    done = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    return (done.stdout.splitlines() or ["unknown"])[0]


def cmsis_root(sources: Path | None = None) -> Path:
    """CMSIS-NN's extracted, checked tree (see sources.prepare_sources); a
    MissingDependencyError where its pinned archive cannot be had, as for a missing compiler."""
    from mnist_edge.sources import prepare_sources

    try:
        return prepare_sources(sources, only=("CMSIS-NN",)).path("CMSIS-NN")
    except MissingDependencyError:
        raise
    except MnistEdgeError as exc:
        message = f"The C engine needs CMSIS-NN's pinned sources: {exc}"
        raise MissingDependencyError(message) from None


def _live_table(engine: GeneratedEngine) -> str:
    """The harness's table of each step's live arena buffers: (step, offset, bytes) rows."""
    rows = [
        f"    {{{step}, {row.offset}, {row.bytes}}},"
        for row in engine.plan.rows()
        if row.offset is not None
        for step in range(row.first_step, row.last_step + 1)
    ]
    return "\n".join([*rows, "    {-1, 0, 0}, /* the end (and C wants one row) */"])


def host_files(engine: GeneratedEngine) -> dict[str, bytes]:
    """The generated files plus the host-only glue and harness, filled for this engine."""
    fields = {
        "prefix": engine.prefix,
        "PREFIX": engine.prefix.upper(),
        "version": __version__,
        "live": _live_table(engine),
    }
    return {
        **engine.files,
        "host_glue.c": template("host_glue.c").substitute(fields).encode(),
        "harness.c": template("harness.c").substitute(fields).encode(),
    }


def _cache_key(files: dict[str, bytes], commands: list[str], compiler: str, flags) -> str:
    from mnist_edge.sources import SOURCE_BY_NAME

    digest = hashlib.sha256()
    for part in (compiler, compiler_version(compiler), " ".join(flags)):
        digest.update(part.encode() + b"\0")
    # The pinned tree's hash stands for every CMSIS-NN header; the files are named too.
    digest.update(SOURCE_BY_NAME["CMSIS-NN"].tree_hash.encode())
    for command in commands:  # every file's flags, and CMSIS-NN's files by path
        digest.update(command.encode() + b"\0")
    for name, data in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:24]


def _run(command: list[str], cwd: Path) -> None:
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, check=False, timeout=BUILD_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MnistEdgeError(f"Cannot run {command[0]}: {exc}.") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = " | ".join(lines[:3]) or f"exit status {done.returncode}"
        raise MnistEdgeError(f"Building the C engine failed: {detail}")


def _compile(command: list[str], staging: Path, version: str) -> None:
    """Run one compile command; a CMSIS-NN file's object comes from the object cache when the
    same command (compiler, flags, pinned tree, file) built it before: models share them."""
    if not Path(command[-1]).name.startswith("cmsis_"):
        _run(command, staging)
        return
    from mnist_edge.sources import SOURCE_BY_NAME

    digest = hashlib.sha256(version.encode())
    digest.update(SOURCE_BY_NAME["CMSIS-NN"].tree_hash.encode())
    digest.update(" ".join(command[:-1]).encode())
    cached = cache_dir() / "codegen" / "objects" / f"{digest.hexdigest()[:24]}.o"
    if not cached.is_file():
        _run(command, staging)
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(staging / command[-1], temporary)
        os.replace(temporary, cached)  # whole or not at all, for a concurrent reader
        return
    shutil.copyfile(cached, staging / command[-1])


def _flags(source: str, ours: bool, sanitize: bool, prefix: str) -> tuple[str, ...]:
    """The compiler flags of one source file: ours strict, CMSIS-NN's its own."""
    flags = (*(ENGINE_FLAGS if ours else CMSIS_FLAGS), *COMMON_FLAGS)
    if not sanitize:
        return flags
    if ours:
        # The engine calls the harness's hook before each step (see templates/harness.c).
        return (*flags, *SANITIZE_FLAGS, f"-D{prefix.upper()}_STEP_HOOK={prefix}_harness_step")
    if Path(source).name == GEMM_KERNEL:
        return (*flags, *GEMM_SANITIZE_FLAGS)
    return (*flags, *CMSIS_SANITIZE_FLAGS)


def _compile_commands(
    compiler: str, root: Path, cmsis: list[Path], ours: list[str], sanitize: bool, prefix: str
) -> list[list[str]]:
    """One compile command per source file, run in the staging folder (which holds ours)."""
    include = ["-I", str(root / "Include"), "-I", "."]
    commands = []
    for i, source in enumerate(cmsis):
        flags = _flags(source.name, False, sanitize, prefix)
        obj = f"cmsis_{i}_{source.stem}.o"
        commands.append([compiler, *flags, *include, "-c", str(source), "-o", obj])
    for name in ours:
        flags = _flags(name, True, sanitize, prefix)
        commands.append([compiler, *flags, *include, "-c", name, "-o", f"{Path(name).stem}.o"])
    return commands


def build(
    engine: GeneratedEngine, sources: Path | None = None, sanitize: bool = False
) -> HostBuild:
    """The engine as a shared library (`sanitize=False`) or an ASan+UBSan harness executable.

    The library exports PREFIX_infer, PREFIX_infer_batch and PREFIX_sizes. Sanitizers run in
    the harness, not in a library loaded into Python (ASan must come first in a process).
    """
    compiler = find_compiler()
    root = cmsis_root(sources)
    cmsis = [root / relative for relative in engine.cmsis_sources]
    files = host_files(engine)
    ours = ["model.c", "harness.c" if sanitize else "host_glue.c"]
    commands = _compile_commands(compiler, root, cmsis, ours, sanitize, engine.prefix)
    link_flags = (
        ("-fsanitize=address,undefined",) if sanitize else ("-shared", "-Wl,--no-undefined")
    )
    target = HARNESS if sanitize else LIBRARY
    key = _cache_key(files, [" ".join(c) for c in commands], compiler, link_flags)
    final = cache_dir() / "codegen" / key
    flags = _flags("model.c", True, sanitize, engine.prefix)
    if (final / target).is_file():
        return HostBuild(final / target, compiler, flags, cached=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        version = compiler_version(compiler)
        for command in commands:
            _compile(command, staging, version)
        objects = [c[-1] for c in commands]
        _run([compiler, *link_flags, *objects, "-o", target, "-lm"], staging)
        for obj in objects:
            (staging / obj).unlink()
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / target).is_file():  # not another process's finished build
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return HostBuild(final / target, compiler, flags, cached=False)


def check_c99(engine: GeneratedEngine, sources: Path | None = None) -> None:
    """Compile the generated files alone with `-std=c99 -Wall -Wextra -Werror` (no link);
    MnistEdgeError with the compiler's first lines if any warning appears."""
    compiler = find_compiler()
    root = cmsis_root(sources)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-c99-") as tmp:
        folder = Path(tmp)
        for name, data in engine.files.items():
            (folder / name).write_bytes(data)
        _run(
            [
                compiler,
                *ENGINE_FLAGS,
                "-I",
                str(root / "Include"),
                "-I",
                str(folder),
                "-fsyntax-only",
                "model.c",
            ],
            folder,
        )


def load_library(path: Path, prefix: str) -> ctypes.PyDLL:
    """A built engine library, its entry points typed.

    PyDLL keeps the GIL during calls: the engine has one static arena, so two threads (or two
    runners of one model, which share the loaded library) must never run it at once.
    """
    try:
        library = ctypes.PyDLL(str(path))
    except OSError as exc:
        raise MnistEdgeError(f"Cannot load the C engine {path}: {exc}.") from None
    batch = getattr(library, f"{prefix}_infer_batch")
    batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32]
    batch.restype = ctypes.c_int
    getattr(library, f"{prefix}_sizes").restype = None
    return library


def library_sizes(library: ctypes.PyDLL, prefix: str) -> tuple[int, int, int]:
    """(input, output, arena) bytes the library was built with."""
    sizes = [ctypes.c_int32() for _ in range(3)]
    getattr(library, f"{prefix}_sizes")(*map(ctypes.byref, sizes))
    return sizes[0].value, sizes[1].value, sizes[2].value


def run_batch(library: ctypes.PyDLL, prefix: str, inputs: np.ndarray) -> np.ndarray:
    """Every input (N x input bytes, int8; or a float32 model's float32 inputs, passed as their
    bytes) through the engine: N x output bytes, int8 (view them as float32 for a float output)."""
    input_bytes, output_bytes, _ = library_sizes(library, prefix)
    inputs = np.asarray(inputs)
    if inputs.dtype == np.float32:
        x = np.ascontiguousarray(inputs).view(np.int8).reshape(-1, input_bytes)
    else:
        x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(-1, input_bytes)
    out = np.zeros((len(x), output_bytes), np.int8)
    status = getattr(library, f"{prefix}_infer_batch")(
        x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), len(x)
    )
    if status != 0:
        raise MnistEdgeError(f"The C engine failed at step {status - 1}.")
    return out

"""Helpers shared by the test files: CLI results checked for what really escaped, the CLI run
as a real process, and where the firmware's pinned source archives are."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]

# The pinned firmware source archives: $MNIST_EDGE_FIRMWARE_SOURCES, else ../shared/third_party
# beside the checkout (the Makefile's FIRMWARE_SOURCES default). Nothing is downloaded.
SOURCES_DIR = Path(
    os.environ.get("MNIST_EDGE_FIRMWARE_SOURCES") or REPO.parent / "shared" / "third_party"
)
# Skipped where they are absent, except under $CI: there the tests run and fail on it.
ON_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
needs_sources = pytest.mark.skipif(
    not SOURCES_DIR.is_dir() and not ON_CI, reason=f"no pinned source archives in {SOURCES_DIR}"
)


def skip_or_fail(reason: str, *, module_level: bool = False) -> NoReturn:
    """Skip a test for want of something, or fail it under $CI: a CI that silently skips
    would pass without running it."""
    if ON_CI:
        pytest.fail(f"CI is set, and this test needs {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def need_module(name: str, extra: str) -> ModuleType:
    """Import an optional module a test needs: skipped where it is absent, failed under $CI.

    At module level it skips (or fails) the whole file; `extra` is the pyproject.toml extra
    that installs it.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(
            f"{name}, which is not installed (the [{extra}] extra: pip install -e '.[{extra}]')",
            module_level=True,
        )


# The firmware tests' programs (conftest.py's needs_tools: a skip here, a failure under $CI).
needs_arm_tools = pytest.mark.needs_tools("arm-none-eabi-gcc", "qemu-system-arm")


def assert_exit(result, code: int) -> None:
    """A CliRunner result ended with `code`, and no exception but SystemExit escaped.

    CliRunner catches what the command raises, so a traceback never reaches result.stderr: an
    unexpected exception shows only as result.exception (with exit code 1).
    """
    escaped = result.exception
    assert escaped is None or isinstance(escaped, SystemExit), (
        f"{type(escaped).__name__} escaped the CLI: {escaped}\n{result.output}"
    )
    assert result.exit_code == code, (result.exit_code, result.output)


def entry_point() -> Path:
    """The console script pip installed beside this interpreter (the venv may not be on PATH)."""
    return Path(sys.executable).parent / "mnist-edge"


def run_command(
    *args, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`mnist-edge ARGS` as a real process, in the tests' environment (conftest.py's caches),
    in `cwd` (this process's own when None)."""
    return subprocess.run(
        [entry_point(), *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def assert_ran(done: subprocess.CompletedProcess, code: int = 0) -> None:
    """A process ended with `code`, with no Python traceback on stderr."""
    assert done.returncode == code, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


def planted_source(source: str, image, byte: int = 3) -> str:
    """model.c whose inference flips the lowest bit of output byte `byte` for exactly this int8
    input image, and computes every other output as before: one wrong byte."""
    values = ", ".join(str(int(v)) for v in image.reshape(-1))
    planted = f"""    {{
        /* Planted by a test: one output byte wrong for one input. */
        static const int8_t planted[{image.size}] = {{{values}}};
        int32_t i = 0;
        while (i < {image.size} && input[i] == planted[i]) {{
            ++i;
        }}
        if (i == {image.size}) {{
            output[{byte}] = (int8_t)(output[{byte}] ^ 1);
        }}
    }}
"""
    head, end, tail = source.rpartition("    return 0;\n}")  # the inference function's end
    assert end, "no end of the inference function in model.c"
    return head + planted + end + tail


def plant_one_byte(monkeypatch, image, byte: int = 3) -> None:
    """Every C engine generated from now on (mnist_edge.codegen.generate, which the codegen
    runner, verify and bundle all call) has planted_source's one wrong byte."""
    import dataclasses

    import mnist_edge.codegen

    generate = mnist_edge.codegen.generate

    def planted_generate(*args, **kwargs):
        engine = generate(*args, **kwargs)
        source = planted_source(engine.files["model.c"].decode(), image, byte)
        files = {**engine.files, "model.c": source.encode()}
        return dataclasses.replace(engine, files=files)

    monkeypatch.setattr(mnist_edge.codegen, "generate", planted_generate)

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


def run_command(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """`mnist-edge ARGS` as a real process, in the tests' environment (conftest.py's caches)."""
    return subprocess.run(
        [entry_point(), *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=timeout,
        check=False,
    )


def assert_ran(done: subprocess.CompletedProcess, code: int = 0) -> None:
    """A process ended with `code`, with no Python traceback on stderr."""
    assert done.returncode == code, (done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]

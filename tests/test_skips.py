"""What a test needs and does not find: skipped here, failed under $CI (helpers.need_module for
an optional module, conftest's needs_tools marker for a program). Shown on sample test files
run by pytest in a child process, with tflite_micro hidden from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

IN_A_TEST = """
import sys

import pytest

from tests.helpers import need_module

sys.modules["tflite_micro"] = None  # hidden: importing it raises ImportError


def test_needs_a_module():
    need_module("tflite_micro", "micro")


@pytest.mark.needs_tools("no-such-program-anywhere")
def test_needs_a_program():
    pass


def test_needs_nothing():
    need_module("json", "none")
"""

AT_MODULE_LEVEL = """
import sys

from tests.helpers import need_module

sys.modules["tflite_micro"] = None
need_module("tflite_micro", "micro")


def test_never_collected():
    pass
"""


def run_sample(tmp_path: Path, text: str, ci: str | None) -> subprocess.CompletedProcess:
    """pytest on one sample file, with this suite's conftest as a plugin, CI set or not."""
    sample = tmp_path / f"test_sample_{ci}.py"
    sample.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider"]
        + ["-q", "-rfEs", "--rootdir", str(tmp_path), str(sample)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("ci", [None, "0", "false"])
def test_a_missing_module_or_program_skips_outside_ci(tmp_path, ci):
    done = run_sample(tmp_path, IN_A_TEST, ci)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 passed, 2 skipped" in done.stdout
    assert "tflite_micro, which is not installed (the [micro] extra" in done.stdout
    done = run_sample(tmp_path, AT_MODULE_LEVEL, ci)
    # The whole file skipped: nothing ran (pytest's exit status 5), nothing failed.
    assert done.returncode == 5 and "1 skipped" in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize("ci", ["1", "true"])
def test_under_ci_a_missing_module_or_program_fails(tmp_path, ci):
    done = run_sample(tmp_path, IN_A_TEST, ci)
    assert done.returncode == 1, done.stdout[-3000:]
    # The module fails in the test; the program, before it (its setup: an error).
    assert "1 failed, 1 passed, 1 error" in done.stdout
    assert "CI is set, and this test needs tflite_micro, which is not installed" in done.stdout
    assert "CI is set, and this test needs no-such-program-anywhere not installed" in done.stdout
    # At module level (test_bundle.py's tflite_micro): the whole file is an error, not skipped.
    done = run_sample(tmp_path, AT_MODULE_LEVEL, ci)
    assert done.returncode != 0 and "1 error" in done.stdout, done.stdout[-3000:]
    assert "CI is set, and this test needs tflite_micro" in done.stdout

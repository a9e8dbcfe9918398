"""One small end-to-end run of the whole pipeline through the installed CLI, as a user runs it:
data, train (one epoch on 2,000 images), export --int8, verify, and the C engine's firmware on
the emulated Cortex-M4. `make check` runs it beside the tests that train nothing: the loop a
developer runs between edits, a few minutes on 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SOURCES_DIR, assert_ran, needs_arm_tools, needs_sources, run_command


@pytest.mark.check
@needs_sources
@needs_arm_tools
def test_the_pipeline_runs_end_to_end(mnist, tmp_path):
    # Relative, as a user types it in their project folder (QEMU then runs in another folder).
    artifacts = Path("artifacts")
    steps = [
        ["data"],
        ["train", "-a", artifacts, "--epochs", "1", "--limit", "2000", "--seed", "0"],
        ["export", "--int8", "-a", artifacts],
        ["verify", "-a", artifacts, "-m", artifacts / "model_int8_mcu.tflite", "-r", "tflm"],
        [
            "firmware",
            "-a",
            artifacts,
            "--engine",
            "codegen",
            "--images",
            "3",
            "--sources",
            SOURCES_DIR,
        ],
    ]
    for step in steps:
        assert_ran(run_command(*step, cwd=tmp_path))
    artifacts = tmp_path / "artifacts"
    record = json.loads((artifacts / "firmware" / "firmware.json").read_text())
    (result,) = record["results"]
    assert result["engine"] == "codegen" and result["golden_identical"] == 3
    verify = json.loads((artifacts / "verify.json").read_text())
    assert verify["results"][0]["accuracy"] > 0.5  # it learned: chance is 0.1

"""`make demo` on a machine without the Arm toolchain: the firmware step records why it was
skipped and exits 0, the report says so; without --skip-missing-tools it stays exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _without_tools() -> dict[str, str]:
    """The test environment with a PATH that has Python and mnist-edge but no toolchain."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent)
    assert shutil.which("arm-none-eabi-gcc", path=env["PATH"]) is None
    return env


def _mnist_edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_edge", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )


def test_demo_firmware_step_without_the_toolchain_is_skipped_and_reported(exported_copy):
    env = _without_tools()
    model = str(exported_copy / "model_int8_mcu.tflite")
    common = ["firmware", "-a", str(exported_copy), "--model", model, "--images", "2"]

    refused = _mnist_edge(*common, env=env)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "arm-none-eabi-gcc is not on PATH" in refused.stderr
    assert not (exported_copy / "firmware").exists()

    skipped = _mnist_edge(*common, "--skip-missing-tools", env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped: arm-none-eabi-gcc is not on PATH" in skipped.stdout
    record = json.loads((exported_copy / "firmware" / "firmware.json").read_text())
    assert record["results"] == [] and "gcc-arm-none-eabi" in record["skipped"]

    report = _mnist_edge("report", "-a", str(exported_copy), env=env)
    assert report.returncode == 0, report.stderr
    page = (exported_copy / "report.html").read_text()
    assert "<h2>Firmware</h2><p>Not run for model_int8_mcu.tflite: arm-none-eabi-gcc" in page


def test_the_demo_installs_or_names_the_tools_and_skips_firmware_without_them():
    script = (REPO / "tools" / "firmware-tools.sh").read_text()
    makefile = (REPO / "Makefile").read_text()
    demo = makefile[makefile.index("demo: setup") :].split("\n\n")[0]
    # The tools step, then firmware before bundle (so the manifest has the on-target figures).
    steps = [line.split()[1] for line in demo.splitlines()[1:] if line.startswith("\t$(BIN)")]
    assert steps[-3:] == ["firmware", "bundle", "report"]
    assert "tools/firmware-tools.sh" in demo and "--skip-missing-tools" in demo
    done = subprocess.run(
        ["bash", "-n", str(REPO / "tools" / "firmware-tools.sh")], capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "sudo -n true" in script and "exit 0" in script.splitlines()[-1]

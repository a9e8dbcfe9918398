"""`make demo` on a machine without the Arm toolchain: the firmware step records why it was
skipped and exits 0, the report says so; without --skip-missing-tools it stays exit 2. The tools
step (tools/firmware-tools.sh) runs against stub apt-get, dpkg, id and sudo that record what
they were asked: it installs as root or with passwordless sudo, else prints the command."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


TOOLS_SCRIPT = REPO / "tools" / "firmware-tools.sh"
PACKAGES = ["gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-dev"]
PACKAGES.append("qemu-system-arm")
# Each stub logs its name and arguments (apt-get its DEBIAN_FRONTEND too), one line a call.
STUBS = {
    "dpkg": 'case " $INSTALLED " in *" $2 "*) exit 0;; esac; exit 1',
    "apt-get": 'echo "frontend=${DEBIAN_FRONTEND:-}" >>"$LOG"; exit "${APT_STATUS:-0}"',
    "id": 'echo "$USER_ID"',
    # Passwordless or not, as the scenario says; then it runs the command, as sudo does.
    "sudo": '[ "$2" = true ] && exit "$SUDO_STATUS"; shift; exec "$@"',
    "arm-none-eabi-gcc": "exit 0",
    "qemu-system-arm": "exit 0",
}


def run_tools_script(tmp_path: Path, stubs, **variables) -> tuple[list[str], str, int]:
    """firmware-tools.sh with a PATH of stubs only: (the calls they logged, stderr, status)."""
    folder = tmp_path / "bin"
    folder.mkdir(parents=True)
    for name in stubs:
        stub = folder / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"$LOG"\n{STUBS[name]}\n')
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": str(folder), "LOG": str(log), "INSTALLED": "", "SUDO_STATUS": "0"}
    env |= {"USER_ID": "1000", **variables}
    done = subprocess.run(
        ["/bin/bash", str(TOOLS_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    return log.read_text().splitlines(), done.stderr, done.returncode


def dpkg_checks() -> list[str]:
    return [f"dpkg -s {package}" for package in PACKAGES]


@pytest.mark.parametrize("who", ["root", "sudo"])
def test_the_tools_step_installs_what_is_missing_as_root_or_with_sudo(tmp_path, who):
    stubs = ["dpkg", "apt-get", "id", "sudo"]
    calls, stderr, status = run_tools_script(
        tmp_path, stubs, USER_ID="0" if who == "root" else "1000", INSTALLED="qemu-system-arm"
    )
    missing = PACKAGES[:3]
    install = f"apt-get install -y -qq --no-install-recommends {' '.join(missing)}"
    apt = ["apt-get update -qq", "frontend=", install, "frontend=noninteractive"]
    if who == "root":  # never through sudo
        assert calls == [*dpkg_checks(), "id -u", *apt]
    else:
        sudo = ["sudo -n true", "sudo -n apt-get update -qq", apt[0], apt[1]]
        sudo += [f"sudo -n {install}", install, "frontend=noninteractive"]
        assert calls == [*dpkg_checks(), "id -u", *sudo]
    assert status == 0
    assert stderr == f"firmware: installing {' '.join(missing)} (about 100 MB) with apt-get\n"


@pytest.mark.parametrize("sudo", ["asks for a password", "absent"])
def test_the_tools_step_prints_the_command_where_it_may_not_install(tmp_path, sudo):
    stubs = ["dpkg", "apt-get", "id"] + (["sudo"] if sudo != "absent" else [])
    calls, stderr, status = run_tools_script(tmp_path, stubs, SUDO_STATUS="1")
    assert status == 0
    assert calls == [*dpkg_checks(), "id -u", *(["sudo -n true"] if sudo != "absent" else [])]
    command = f"sudo apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
    assert stderr.endswith(f"run: {command}\n") and stderr.count("\n") == 1
    assert shlex.split(command)[-4:] == PACKAGES  # a command a user can paste


def test_the_tools_step_does_nothing_where_the_tools_are_there(tmp_path):
    # On PATH (Arm's own download, say) though no package is: nothing to install.
    stubs = ["dpkg", "apt-get", "id", "sudo", "arm-none-eabi-gcc", "qemu-system-arm"]
    calls, stderr, status = run_tools_script(tmp_path, stubs)
    assert (calls, stderr, status) == (dpkg_checks(), "", 0)
    # Installed as packages, not on this PATH: nothing either.
    calls, stderr, status = run_tools_script(
        tmp_path / "packages", ["dpkg", "apt-get", "id", "sudo"], INSTALLED=" ".join(PACKAGES)
    )
    assert (calls, stderr, status) == (dpkg_checks(), "", 0)


def test_the_tools_step_says_what_to_do_without_apt_or_when_apt_fails(tmp_path):
    calls, stderr, status = run_tools_script(tmp_path, ["dpkg", "id", "sudo"])
    assert status == 0 and calls == dpkg_checks()
    assert stderr.startswith("firmware: no apt-get here; install an Arm GNU toolchain")
    calls, stderr, status = run_tools_script(
        tmp_path / "failing", ["dpkg", "apt-get", "id"], USER_ID="0", APT_STATUS="100"
    )
    assert status == 0 and calls[-2:] == ["apt-get update -qq", "frontend="]  # stopped there
    assert stderr.splitlines()[-1] == (
        "firmware: apt-get could not install them; run: sudo apt-get install -y "
        f"--no-install-recommends {' '.join(PACKAGES)}"
    )

"""The tflite-runtime 2.14 virtual environment (see environments' module doc)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.processes import stream
from mnist_edge.proofs.environments import (
    TFLITE_RUNTIME,
    Environment,
    _installed,
    _layer,
    _pip_reason,
    _Progress,
)
from mnist_edge.proofs.legacy_runner import (
    TFLITE_RUNTIME_VENV,
    TFLITE_RUNTIME_VERSION,
    tflite_runtime_python,
)

log = logging.getLogger(__name__)


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_legacy_python(base_python: Path | str | None = None) -> str:
    """A Python that tflite-runtime 2.14 has wheels for (3.8 to 3.11): the one given, this one,
    or python3.11 ... python3.8 on PATH; one line if there is none."""
    wanted = "tflite-runtime 2.14 needs Python 3.8 to 3.11 (it has no wheels for newer ones)"
    if base_python is not None:
        version = _python_version(str(base_python))
        if version is None or not (3, 8) <= version <= (3, 11):
            found = "not a Python" if version is None else f"Python {version[0]}.{version[1]}"
            raise MnistEdgeError(f"{base_python}: {found}; {wanted}.")
        return str(base_python)
    if (3, 8) <= sys.version_info[:2] <= (3, 11):
        return sys.executable
    for name in ("python3.11", "python3.10", "python3.9", "python3.8"):
        path = shutil.which(name)
        if path and (version := _python_version(path)) and (3, 8) <= version <= (3, 11):
            return path
    raise MnistEdgeError(
        f"No Python 3.8-3.11 found: {wanted}; install python3.11 (with its venv module) or pass "
        "the path of one (--legacy-python)."
    )


def _build_venv(staging: Path, base: str) -> dict:
    log.info(
        "creating the tflite-runtime %s virtual environment with %s", TFLITE_RUNTIME_VERSION, base
    )
    done = subprocess.run(
        [base, "-m", "venv", str(staging)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:200]
        raise MnistEdgeError(
            f"{base} could not create a virtual environment ({reason}): install its venv module "
            "(Debian: apt-get install python3.11-venv)."
        )
    python = staging / "bin" / "python"
    progress = _Progress("downloading tflite-runtime wheels")

    def on_line(line: str) -> None:
        stripped = line.strip()
        for prefix in ("Downloading ", "Using cached ", "Processing "):
            if stripped.startswith(prefix):
                progress.step(stripped.removeprefix(prefix).split("/")[-1])

    env = {**os.environ, "PIP_PROGRESS_BAR": "off"}
    env.pop("PYTHONPATH", None)
    requirement = f"tflite-runtime=={TFLITE_RUNTIME_VERSION}"
    code, lines = stream(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        + ["--progress-bar", "off", requirement, "numpy<2"],
        on_line,
        env,
    )
    if code != 0:
        raise MnistEdgeError(
            f"pip could not install {requirement} ({_pip_reason(lines)}): check the network, or "
            "point pip at a reachable index (PIP_INDEX_URL)."
        )
    done = subprocess.run(
        [str(python), "-c", "import tflite_runtime, numpy; print(tflite_runtime.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1][:200]
        raise MnistEdgeError(f"tflite-runtime {TFLITE_RUNTIME_VERSION} does not import ({reason}).")
    site = next((staging / "lib").glob("python3.*/site-packages"))
    return {"base_python": base, "installed": _installed(site)}


def prepare_tflite_runtime(base_python: Path | str | None = None) -> Environment:
    """tflite-runtime 2.14 in its own virtual environment (x86-64, numpy < 2), made once."""
    import platform

    started = time.perf_counter()
    venv = tflite_runtime_python().parent.parent

    def complete(folder: Path) -> bool:
        # A venv an earlier version (or the tests) made has no marker; it was renamed into
        # place whole, so its interpreter being there is enough.
        return (folder / "bin" / "python").exists()

    fresh = False
    if not complete(venv):
        base = find_legacy_python(base_python)
        venv, fresh = _layer(
            venv.parent,
            TFLITE_RUNTIME_VENV,
            lambda staging: _build_venv(staging, base),
            complete,
            lock=venv.parent / f".{TFLITE_RUNTIME_VENV}.lock",
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    return Environment(
        platform=TFLITE_RUNTIME,
        description=f"linux-{platform.machine()}",
        command=(str(venv / "bin" / "python"),),
        env=env,
        layers={"venv": str(venv)},
        built=("venv",) if fresh else (),
        seconds=round(time.perf_counter() - started, 1),
    )

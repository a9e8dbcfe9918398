"""tflite-runtime 2.14, the last release of the old standalone runtime, in its own interpreter.

It needs Python <= 3.11 and numpy < 2, so it cannot live in this process: its virtual
environment runs `legacy_script.py` in a subprocess, with the builtin kernels and no delegate.
The environment is made by `mnist_edge.proofs.environments.prepare_tflite_runtime()` when a
proof asks for it, never as a side effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import cache_dir

TFLITE_RUNTIME_VERSION = "2.14.0"
TFLITE_RUNTIME_VENV = "venv-tflite-runtime-2.14"
SCRIPT = Path(__file__).with_name("legacy_script.py")


def tflite_runtime_python() -> Path:
    """Where the tflite-runtime 2.14 virtual environment's interpreter is expected."""
    return cache_dir() / TFLITE_RUNTIME_VENV / "bin" / "python"


@dataclass(frozen=True)
class LegacyRun:
    """One model in tflite-runtime: loaded or not (and why), and its raw outputs if asked."""

    model: str
    loaded: bool
    error: str | None
    outputs: np.ndarray | None = field(default=None, repr=False)
    seconds: float | None = None


@dataclass(frozen=True)
class LegacyReply:
    """What tflite-runtime's interpreter said: its versions, and one LegacyRun per job."""

    version: str
    python: str | None
    machine: str | None
    numpy: str | None
    runs: list[LegacyRun]


def run_in_tflite_runtime(
    python: Path, jobs: list[tuple[Path, np.ndarray | None]]
) -> tuple[str, list[LegacyRun]]:
    """Load (and run, given inputs in the model's dtype) each model in tflite-runtime."""
    reply = tflite_runtime_reply(python, jobs)
    return reply.version, reply.runs


def tflite_runtime_reply(
    python: Path, jobs: list[tuple[Path, np.ndarray | None]], timeout: float = 600
) -> LegacyReply:
    """run_in_tflite_runtime, with the interpreter's Python and numpy versions."""
    with tempfile.TemporaryDirectory(prefix="mnist-edge-tflite-runtime-") as tmp:
        folder = Path(tmp)
        request = []
        for i, (model, inputs) in enumerate(jobs):
            in_path = out_path = None
            if inputs is not None:
                in_path, out_path = folder / f"in{i}.npy", folder / f"out{i}.npy"
                np.save(in_path, inputs)
            request.append(
                {
                    "model": str(Path(model).resolve()),
                    "inputs": str(in_path) if in_path else None,
                    "outputs": str(out_path) if out_path else None,
                }
            )
        (folder / "request.json").write_text(json.dumps(request))
        try:
            proc = subprocess.run(
                [str(python), SCRIPT, folder / "request.json", folder / "reply.json"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                # The venv's own numpy < 2, never a PYTHONPATH meant for this process.
                env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            )
        except subprocess.TimeoutExpired:
            raise MnistEdgeError(
                f"{python}: tflite-runtime did not finish in {timeout:.0f} s."
            ) from None
        except OSError as exc:
            raise MnistEdgeError(f"{python}: cannot run it ({exc.strerror or exc}).") from None
        if proc.returncode != 0 or not (folder / "reply.json").is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MnistEdgeError(f"{python}: tflite-runtime did not run ({last}).")
        reply = json.loads((folder / "reply.json").read_text())
        runs = []
        for (model, _), job, result in zip(jobs, request, reply["results"], strict=True):
            outputs = None
            if result["loaded"] and job["outputs"]:
                outputs = np.load(job["outputs"])
            runs.append(
                LegacyRun(
                    Path(model).name,
                    result["loaded"],
                    result["error"],
                    outputs,
                    result.get("seconds"),
                )
            )
        return LegacyReply(
            reply["version"], reply.get("python"), reply.get("machine"), reply.get("numpy"), runs
        )

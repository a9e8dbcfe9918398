"""Which runtimes take the bundled model: the golden vectors run through every engine at hand,
and every .tflite export of the folder checked against TFLM and tflite-runtime 2.14."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from packaging.version import Version

from mnist_edge.compare import bit_agreement
from mnist_edge.errors import ModelError
from mnist_edge.machine import library_versions
from mnist_edge.model_info import ModelInfo, min_runtime, model_kind, read_model, tflm_refusal
from mnist_edge.proofs.legacy_runner import (
    TFLITE_RUNTIME_VENV,
    TFLITE_RUNTIME_VERSION,
    LegacyRun,
    run_in_tflite_runtime,
    tflite_runtime_python,
)
from mnist_edge.records import ExportCompat, RuntimeProof
from mnist_edge.runtimes import RUNTIMES, open_runner

log = logging.getLogger(__name__)


def prove_runtimes(
    model: Path, others: list[Path], golden_in: np.ndarray, golden_out: np.ndarray, arena: int
) -> tuple[list[RuntimeProof], dict[str, LegacyRun], str | None]:
    """Load the model in every runtime at hand and run the golden inputs through each."""
    count = len(golden_in)
    micro = library_versions("tflite-micro").get("tflite-micro", "?")
    proofs = [
        RuntimeProof(
            "tflm",
            f"tflite-micro {micro}",
            True,
            count,
            count,
            0.0,
            f"made the golden vectors, at arena_size={arena}",
        )
    ]
    litert = library_versions("ai-edge-litert").get("ai-edge-litert", "?")
    golden_out = golden_out.reshape(count, -1)  # a row per input, whatever the output's axes
    for runtime in ("litert-ref", "litert"):
        package = f"ai-edge-litert {litert}"
        try:
            # The model's own shapes: the bundle checked them (MNIST's, or its --inputs').
            runner = open_runner(model, runtime, any_shape=True)
            outputs = runner.predict_raw(golden_in).reshape(count, -1)
        except ModelError as exc:
            proofs.append(RuntimeProof(runtime, package, False, None, count, None, str(exc)))
            continue
        agree = bit_agreement("tflm", runtime, golden_out, outputs)
        proofs.append(
            RuntimeProof(
                runtime,
                package,
                True,
                agree.bit_identical,
                count,
                agree.max_abs_diff,
                RUNTIMES[runtime][1],
            )
        )
    python = tflite_runtime_python()
    if not python.is_file():
        return proofs, {}, None
    log.info("Loading the exports in tflite-runtime (%s)", python)
    version, runs = run_in_tflite_runtime(
        python, [(model, golden_in), *((p, None) for p in others)]
    )
    run = runs[0]
    agree = (
        bit_agreement("tflm", "tflite-runtime", golden_out, run.outputs.reshape(count, -1))
        if run.loaded
        else None
    )
    proofs.append(
        RuntimeProof(
            "tflite-runtime",
            f"tflite-runtime {version}",
            run.loaded,
            agree.bit_identical if agree else None,
            count,
            agree.max_abs_diff if agree else None,
            run.error or "builtin kernels, no delegate",
        )
    )
    return proofs, {r.model: r for r in runs}, version


def export_compat(
    model: Path,
    info: ModelInfo,
    others: list[Path],
    arena: int,
    legacy: dict[str, LegacyRun],
    legacy_version: str | None,
) -> list[ExportCompat]:
    """For the bundled model and every other .tflite export: TFLM and tflite-runtime 2.14."""
    rows = []
    for path in [model, *others]:
        try:
            other = info if path == model else read_model(path.read_bytes(), str(path))
        except ModelError as exc:
            rows.append(ExportCompat(path.name, "unreadable", None, str(exc), str(exc)))
            continue
        kind = model_kind(other)
        needs = min_runtime(other).version
        if path.name in legacy:
            run = legacy[path.name]
            loads = "loads (proven here)" if run.loaded else f"fails (proven here): {run.error}"
        elif needs is None:
            loads = "unknown (none of its operators is in our table)"
        else:
            fits = Version(needs) <= Version(TFLITE_RUNTIME_VERSION)
            loads = (
                f"{'expected to load' if fits else 'expected to fail'}: its operators need "
                f"{needs} (not run: no {TFLITE_RUNTIME_VENV} virtual environment)"
            )
        refusal = tflm_refusal(other, kind)
        tflm = (
            f"bundled; runs in {arena:,} bytes of arena"
            if path == model
            else f"refused: {refusal}"
            if refusal
            else "a kind TFLM runs (not bundled)"
        )
        version = legacy_version or TFLITE_RUNTIME_VERSION
        rows.append(
            ExportCompat(path.name, kind, needs, tflm, f"tflite-runtime {version}: {loads}")
        )
    return rows

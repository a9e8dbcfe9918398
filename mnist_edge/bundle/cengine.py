"""The C engine in the bundle: the model compiled to C (mnist_edge.codegen) as a folder a
firmware engineer can build on its own, with the CMSIS-NN sources it calls, a CMakeLists.txt and
a golden test, and its int8 outputs checked against host TFLM's before it is shipped.

    c_engine/  model.h model.c [kernels.h] CMakeLists.txt test_golden.c
               cmsis-nn/{LICENSE,Include/,Source/}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.bundle.golden import GoldenVectors
from mnist_edge.compare import bit_agreement
from mnist_edge.device import DeviceModel
from mnist_edge.device.csource import c_rows, template
from mnist_edge.records import CEngine, PlanBuffer
from mnist_edge.sources import SOURCE_BY_NAME

C_DIR = "c_engine"
CMSIS_DIR = "cmsis-nn"
BUILD = "cmake -S . -B build && cmake --build build && ctest --test-dir build"


def _cmsis_files(root: Path, sources: tuple[str, ...]) -> dict[str, bytes]:
    """CMSIS-NN's license, its headers and the sources the engine calls, as the bundle holds
    them (relative to c_engine/)."""
    files = {f"{CMSIS_DIR}/LICENSE": (root / "LICENSE").read_bytes()}
    for header in sorted((root / "Include").rglob("*.h")):
        files[f"{CMSIS_DIR}/{header.relative_to(root)}"] = header.read_bytes()
    for source in sources:
        files[f"{CMSIS_DIR}/{source}"] = (root / source).read_bytes()
    return files


def _project_files(engine, device: DeviceModel, vectors: GoldenVectors) -> dict[str, bytes]:
    """CMakeLists.txt and test_golden.c, from the bundle's templates."""
    fields = {
        "version": __version__,
        "model": device.name,
        "prefix": engine.prefix,
        "PREFIX": engine.prefix.upper(),
        "count": len(vectors.inputs),
        "cmsis_commit": SOURCE_BY_NAME["CMSIS-NN"].commit[:12],
        "cmsis_sources": "\n".join(f"  {CMSIS_DIR}/{s}" for s in engine.cmsis_sources),
        "inputs": c_rows(vectors.inputs.reshape(len(vectors.inputs), -1), 16),
        "outputs": c_rows(vectors.outputs, 10),
    }
    package = "mnist_edge.bundle"
    return {
        "CMakeLists.txt": template("CMakeLists.txt", package).substitute(fields).encode(),
        "test_golden.c": template("test_golden.c", package).substitute(fields).encode(),
    }


def c_engine(
    device: DeviceModel,
    vectors: GoldenVectors,
    inputs: np.ndarray,
    tflm_outputs: np.ndarray,
    sources: Path | None,
) -> tuple[dict[str, bytes], CEngine]:
    """The C engine's files (relative to the bundle) and what the manifest says of it.

    It is built for this host and run on `inputs` (the model's int8 test inputs, as many as
    `tflm_outputs` has rows): the manifest states how many came out bit-identical to TFLM's.
    ModelError where the generator cannot compile the model; MissingDependencyError where no C
    compiler or CMSIS-NN's pinned sources are at hand.
    """
    from mnist_edge.codegen.host import cmsis_root
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    runner = CodegenRunner(device.path, sources=sources)
    engine = runner.generated
    ours = runner.predict_raw(inputs[: len(tflm_outputs)])
    files = {
        **{name: data for name, data in engine.files.items()},
        **_project_files(engine, device, vectors),
        **_cmsis_files(cmsis_root(sources), engine.cmsis_sources),
    }
    summary = CEngine(
        folder=C_DIR,
        files=sorted(files),
        prefix=engine.prefix,
        arena_bytes=engine.arena_bytes,
        plan_level=engine.plan.level,
        lower_bound_bytes=engine.plan.lower_bound_bytes,
        plan=[
            PlanBuffer(r.buffer, r.offset, r.bytes, r.first_step, r.last_step, r.holds)
            for r in engine.plan.rows()
        ],
        cmsis_nn_sources=list(engine.cmsis_sources),
        host_check=bit_agreement("tflm", "codegen", tflm_outputs, ours),
        build=BUILD,
    )
    return {f"{C_DIR}/{name}": data for name, data in files.items()}, summary

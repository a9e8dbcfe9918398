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
from mnist_edge.errors import ModelError
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


def _as_bytes(dtype: np.dtype) -> str:
    """How test_golden.c holds values of this dtype: int8 as they are, others as their bytes."""
    return "int8" if dtype == np.int8 else f"{dtype.name} (as bytes)"


def _project_files(engine, device: DeviceModel, vectors: GoldenVectors) -> dict[str, bytes]:
    """CMakeLists.txt and test_golden.c, from the bundle's templates. The golden test compares
    bytes: a float32 input or output (the engine takes and gives it as void *) is written as
    its bytes, so that equal bytes mean the same bits as TFLM's."""
    count = vectors.count
    inputs = np.ascontiguousarray(vectors.inputs).view(np.int8).reshape(count, -1)
    outputs = np.ascontiguousarray(vectors.outputs).view(np.int8).reshape(count, -1)
    shape = "x".join(map(str, vectors.inputs.shape[1:]))
    fields = {
        "version": __version__,
        "model": device.name,
        "prefix": engine.prefix,
        "PREFIX": engine.prefix.upper(),
        "count": count,
        "input_note": f"{_as_bytes(vectors.inputs.dtype)}, {shape}",
        "output_note": _as_bytes(vectors.outputs.dtype),
        "cmsis_commit": SOURCE_BY_NAME["CMSIS-NN"].commit[:12],
        "cmsis_sources": "\n".join(f"  {CMSIS_DIR}/{s}" for s in engine.cmsis_sources),
        "inputs": c_rows(inputs, 16),
        "outputs": c_rows(outputs, 10),
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

    It is built for this host and run on `inputs` (the model's inputs, as fed: MNIST's test
    images or the ones --inputs named, as many as `tflm_outputs` has rows): the manifest states
    how many came out bit-identical to TFLM's.
    ModelError where the generator cannot compile the model; MissingDependencyError where no C
    compiler or CMSIS-NN's pinned sources are at hand.
    """
    from mnist_edge.codegen.host import cmsis_root
    from mnist_edge.runtimes.codegen_runner import CodegenRunner

    # The model's own shapes: the bundle checked them (MNIST's, or its --inputs').
    runner = CodegenRunner(device.path, sources=sources, any_shape=True)
    engine = runner.generated
    count = len(tflm_outputs)
    ours = runner.predict_raw(inputs[:count]).reshape(count, -1)
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
        host_check=bit_agreement("tflm", "codegen", tflm_outputs.reshape(count, -1), ours),
        build=BUILD,
    )
    return {f"{C_DIR}/{name}": data for name, data in files.items()}, summary


def refuse_for_c_engine(engines: list[str], device: DeviceModel) -> None:
    """An int8 model with an operator the C engine lacks, refused before any work where the C
    engine is asked for (`all` included): one line, and how to bundle it for TFLM alone."""
    if "codegen" not in engines or device.kind != "int8":
        return
    from mnist_edge.codegen.graph import refuse_unsupported

    try:
        refuse_unsupported(device.info, device.name)
    except ModelError as exc:
        raise c_engine_refusal(exc, engines) from None


def c_engine_refusal(exc: ModelError, engines: list[str]) -> ModelError:
    """Why the C engine cannot be made of an int8 model: asked for alone, the generator's own
    words; with `all`, also how to bundle the model for TFLM alone."""
    if engines == ["codegen"]:
        return exc
    return ModelError(f"{str(exc).rstrip('.')}; or bundle it for TFLM alone: --engine tflm.")

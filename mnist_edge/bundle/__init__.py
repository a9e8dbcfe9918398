"""Ship to devices: the folder a firmware or app engineer takes away, checked on TFLM itself.

The bundle holds the .tflite, the same bytes as a C array for TensorFlow Lite Micro (TFLM), golden
vectors computed by TFLM's reference kernels (never XNNPACK, whose int8 rounding differs), and a
manifest with what a device needs to know before flashing: the tensor-arena size (measured), the
op resolver, the operator versions and the oldest runtime that loads them. The parts: `golden`
(the vectors), `csource` and `readme` (the files, from `templates/`), `compat` (which runtimes
take the model); the arena is measured by `mnist_edge.arena`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.arena import measure_arena
from mnist_edge.artifacts import (
    BUNDLE_DIR,
    MANIFEST,
    VERIFY_JSON,
    int8_model,
    load_record,
    on_target,
    record_payload,
)
from mnist_edge.bundle.cengine import C_DIR, c_engine, c_engine_refusal, refuse_for_c_engine
from mnist_edge.bundle.compat import export_compat, prove_runtimes
from mnist_edge.bundle.golden import (
    GOLDEN_FILE,
    GoldenVectors,
    choose_inputs,
    golden_vectors,
    run_given,
)
from mnist_edge.bundle.readme import bundle_readme
from mnist_edge.compare import accuracy as top1
from mnist_edge.compare import bit_agreement
from mnist_edge.data import MnistTest, ensure_test_split, to_float
from mnist_edge.device import DeviceModel, Need, check_budgets, load_device_model
from mnist_edge.device.csource import golden_data_files, model_data_files
from mnist_edge.errors import CheckFailed, MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.files import (
    json_bytes,
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    sha256_file,
    write_files_atomic,
)
from mnist_edge.machine import library_versions
from mnist_edge.model_info import (
    ModelInfo,
    count_macs,
    count_params,
    min_runtime,
    op_uses,
)
from mnist_edge.options import (
    DEFAULT_C_NAME,
    DEFAULT_GOLDEN,
    DEFAULT_INPUTS_SEED,
    DEFAULT_PROOF_IMAGES,
    NPU_TARGETS,
    PROOF_CPUS,
    PROOF_PLATFORMS,
)
from mnist_edge.options import (
    FIRMWARE_ENGINES as ENGINES,
)
from mnist_edge.records import ArenaReport, BundleFile, BundleResult, RuntimeAccuracy, VerifyRow
from mnist_edge.runtimes import RUNTIMES, open_runner
from mnist_edge.runtimes.tflm_runner import TFLMRunner
from mnist_edge.tensors import NUM_CLASSES, TensorSpec, quantize
from mnist_edge.verify import load_reference

log = logging.getLogger(__name__)

NPU_DIR = "npu"

LABELS = [str(digit) for digit in range(NUM_CLASSES)]
TEST_IMAGES = 10_000
FLASH_DETAIL = "the model's bytes; code not counted"
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _preprocessing(spec: TensorSpec) -> dict[str, object]:
    steps = ["x = pixel / 255.0 as float32 (28×28 grayscale, uint8, white digit on black)"]
    result: dict[str, object] = {"input": "MNIST-style 28×28 grayscale image, N×28×28×1"}
    if spec.quantized:
        steps.append(
            "q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127) as int8"
        )
        pixels = np.arange(256, dtype=np.float32)
        q = quantize(pixels / np.float32(255.0), spec).astype(np.int32)
        shift = int(q[0])
        # A device can skip the float math when the quantization is an exact shift (checked).
        if np.array_equal(q, np.arange(256) + shift):
            result["int8_shortcut"] = f"q = pixel {'-' if shift < 0 else '+'} {abs(shift)}"
    result["steps"] = steps
    result["scale"] = spec.scale
    result["zero_point"] = spec.zero_point
    return result


def _tensor_preprocessing(spec: TensorSpec) -> dict[str, object]:
    """For a model run on other inputs than MNIST's images: its input tensor as it takes it
    (how raw data becomes those values is the model's own recipe, not in the model)."""
    shape = "×".join(["N", *map(str, spec.shape[1:])])
    steps = [f"x = the model's own features of its raw data, {shape} (not known here)"]
    if spec.quantized:
        steps.append(
            "q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127) as int8"
        )
    return {
        "input": f"the model's input tensor as it takes it: {spec.dtype}, {shape}",
        "shape": list(spec.shape),
        "dtype": spec.dtype,
        "steps": steps,
        "scale": spec.scale,
        "zero_point": spec.zero_point,
    }


def _verify_rows(artifacts: Path, model: Path) -> tuple[dict[str, VerifyRow], float | None]:
    """This model's rows in a verify.json over the full test set, if verify ran on these bytes."""
    if model.parent.resolve() != artifacts.resolve():
        return {}, None
    try:
        record = load_record(artifacts, "verify")
    except MnistEdgeError:
        return {}, None  # an unreadable record is only a missed shortcut: measure instead
    if record is None or record.images != TEST_IMAGES:
        return {}, None
    digest = sha256_file(model)
    # A row counts only for the very bytes it verified (an earlier model of the same name
    # does not): verify records each export's SHA-256.
    rows = {r.runtime: r for r in record.results if r.artifact == model.name and r.sha256 == digest}
    return rows, record.reference.accuracy


def _measure_accuracy(
    model: Path, artifacts: Path, mnist: MnistTest, q: np.ndarray, tflm: TFLMRunner, golden: int
) -> tuple[dict[str, np.ndarray], list[RuntimeAccuracy], float | None]:
    """Raw outputs (TFLM's at least for the golden images) and the test accuracy per runtime.

    A current verify.json that already ran TFLM on the full test set is reused; otherwise TFLM,
    litert-ref and litert all run here, so their agreement can be stated too.
    """
    labels = mnist.y_test
    rows, keras_accuracy = _verify_rows(artifacts, model)
    outputs: dict[str, np.ndarray] = {}
    if "tflm" in rows:
        outputs["tflm"] = tflm.predict_raw(q[:golden])
    else:
        log.info("Running TFLM on the %d test images (reference kernels, one at a time)", len(q))
        started = time.perf_counter()
        outputs["tflm"] = tflm.predict_raw(q)
        log.info("TFLM took %.1f s", time.perf_counter() - started)
        for runtime in ("litert-ref", "litert"):
            outputs[runtime] = open_runner(model, runtime).predict_raw(q, batch=1000)
    if keras_accuracy is None:
        try:
            reference, _ = load_reference(artifacts, mnist, len(labels))
            keras_accuracy = top1(reference, labels)
        except MnistEdgeError:
            keras_accuracy = None  # bundling a model without its Keras source is allowed
    accuracy = []
    for runtime in ("tflm", "litert-ref", "litert"):
        if runtime in outputs and len(outputs[runtime]) == len(labels):
            # Dequantizing is monotonic, so the raw outputs' argmax is the class.
            measured = top1(outputs[runtime], labels)
            accuracy.append(
                RuntimeAccuracy(runtime, RUNTIMES[runtime][1], measured, len(labels), "bundle")
            )
        elif runtime in rows:
            row = rows[runtime]
            accuracy.append(
                RuntimeAccuracy(runtime, row.kernels, row.accuracy, TEST_IMAGES, VERIFY_JSON)
            )
    return outputs, accuracy, keras_accuracy


@dataclass(frozen=True, eq=False)
class _Runs:
    """What the runtimes computed on the bundle's inputs, before anything is written."""

    inputs: np.ndarray  # every input run, as fed (MNIST: the 10,000 test images)
    outputs: dict[str, np.ndarray]  # raw outputs by runtime (tflm at least for the golden ones)
    accuracy: list[RuntimeAccuracy]  # empty where the inputs have no labels
    keras_accuracy: float | None
    vectors: GoldenVectors
    mnist: MnistTest | None  # MNIST's test split (the proofs run its images); None: other inputs


def _mnist_runs(model, artifacts, data, device, tflm, golden) -> _Runs:
    """MNIST's 10,000 test images on TFLM, LiteRT's builtin kernels and XNNPACK (or verify's
    rows for them), and the first `golden` images' vectors."""
    mnist = ensure_test_split(data)
    q = quantize(to_float(mnist.x_test), device.input)
    outputs, accuracy, keras_accuracy = _measure_accuracy(model, artifacts, mnist, q, tflm, golden)
    vectors = golden_vectors(q, outputs["tflm"], mnist.y_test, golden)
    return _Runs(q, outputs, accuracy, keras_accuracy, vectors, mnist)


@contextlib.contextmanager
def _removed_on_failure(out: Path):
    """Remove the folders made for `out` when the bundle fails before it is written: a failed
    run leaves no half-written bundle (an existing folder is left as it was)."""
    made = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        yield
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def _versions(info: ModelInfo, artifacts: Path) -> dict[str, object]:
    try:
        record = load_record(artifacts, "export")
    except MnistEdgeError:
        record = None  # the export versions are context, not a reason to fail the bundle
    export_versions = record.versions if record is not None else {}
    modes = ", ".join(info.optimization_modes) or "no optimization"
    return {
        "tensorflow": info.tensorflow_version,
        "converter": (
            f"TFLiteConverter (MLIR) of TensorFlow {info.tensorflow_version}, "
            f"API v{info.converter_api}; {modes}"
        ),
        "schema_version": info.schema_version,
        "export": export_versions,
        "mnist-edge": __version__,
        **library_versions("ai-edge-litert", "tflite-micro", "numpy"),
    }


def _write_bundle(
    out: Path,
    result: BundleResult,
    model_bytes: bytes,
    c_name: str,
    golden: GoldenVectors,
    c_files: dict[str, bytes],
    npu_files: dict[str, bytes],
) -> BundleResult:
    """Write every file of the bundle, the manifest (which lists the others) last. The C
    engine's and the NPU's folders are staged whole and swapped in first; the rest is one
    atomic step."""
    described = golden.described + (" (labels 255)" if golden.labels is None else "")
    golden_h, golden_cc = golden_data_files(
        golden.inputs, golden.flat_outputs(), golden.c_labels, c_name, result.model, described
    )
    given = golden if golden.source is not None else None
    payloads: dict[str, bytes] = {
        result.model: model_bytes,
        "golden_data.h": golden_h.encode(),
        "golden_data.cc": golden_cc.encode(),
        "README.md": bundle_readme(result, c_name, given).encode(),
        GOLDEN_FILE: golden.npz_bytes(),
    }
    if result.labels:
        payloads["labels.txt"] = ("\n".join(result.labels) + "\n").encode()
    if "tflm" in result.engines:
        model_h, model_cc = model_data_files(model_bytes, result.model, c_name, result.arena_bytes)
        payloads |= {"model_data.h": model_h.encode(), "model_data.cc": model_cc.encode()}
    everything = {**payloads, **c_files, **npu_files}
    files = [BundleFile(name, len(p), sha256_bytes(p)) for name, p in sorted(everything.items())]
    result = replace(result, files=files)
    payloads[MANIFEST] = json_bytes(record_payload(result))
    for folder, files in ((C_DIR, c_files), (NPU_DIR, npu_files)):
        _swap_folder(out / folder, {n.removeprefix(f"{folder}/"): d for n, d in files.items()})
    # One step, the manifest renamed last: a folder is never half old, half new.
    write_files_atomic({out / name: payload for name, payload in payloads.items()})
    return result


def _swap_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Replace `folder` with one holding `files` (or remove it when there are none), staged
    beside it first so that it is never half written."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    trash = staging.with_name(staging.name + "-old")
    try:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        if folder.exists():
            os.replace(folder, trash)
        if files:
            os.replace(staging, folder)
    except OSError as exc:
        raise MnistEdgeError(f"Cannot write {folder}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)


def _npu(targets, model: Path) -> tuple[dict[str, bytes], list]:
    """vela's compiled model and estimate for each asked-for Ethos-U configuration: files under
    npu/<target>/ and the estimates for the manifest (estimates: no NPU ran them)."""
    if not targets:
        return {}, []
    from mnist_edge.npu import compile_for_npu

    files, estimates = {}, []
    for target in dict.fromkeys(targets):
        compiled = compile_for_npu(model, target)
        files[f"{NPU_DIR}/{target}/{compiled.file_name}"] = compiled.model
        estimates.append(compiled.estimate)
    return files, estimates


def _c_engine(engines, device, runs: _Runs, sources):
    """The C engine's files and summary where it was asked for and can be made; else none,
    and why. Asked for alone, a reason is an error (ModelError or MissingDependencyError); with
    `all`, so is an int8 model it cannot compile (a float model or a missing compiler is left
    out, with the reason)."""
    if "codegen" not in engines:
        return {}, None, []
    try:
        files, summary = c_engine(device, runs.vectors, runs.inputs, runs.outputs["tflm"], sources)
    except (ModelError, MissingDependencyError) as exc:
        if engines == ["codegen"]:
            raise
        if isinstance(exc, ModelError) and device.kind == "int8":
            raise c_engine_refusal(exc, engines) from None
        log.warning("Not bundling the C engine: %s", exc)
        return {}, None, [f"codegen: {exc}"]
    check = summary.host_check
    log.info("C engine: %d/%d outputs bit-identical to TFLM's", check.bit_identical, check.images)
    if check.bit_identical != check.images:
        # A C engine that is not TFLM's arithmetic is not shipped: nothing is written.
        first = check.mismatches[0] if check.mismatches else "?"
        which = "test image" if runs.mnist is not None else "input"
        raise CheckFailed(
            f"The C engine's outputs are {check.bit_identical:,}/{check.images:,} bit-identical "
            f"to TFLM's (first difference: {which} {first}); not bundling it."
        )
    return files, summary, []


def _check_options(prove, prove_images, golden, c_name, max_arena, max_flash, engines, npu):
    """One line for the first option out of range, before any work."""
    if set(npu) - set(NPU_TARGETS):
        unknown = ", ".join(sorted(set(npu) - set(NPU_TARGETS)))
        raise MnistEdgeError(f"Unknown NPU {unknown}: expected one of {', '.join(NPU_TARGETS)}.")
    if not engines or set(engines) - set(ENGINES):
        raise MnistEdgeError(
            f"Unknown engines {', '.join(engines) or 'none'}: expected {', '.join(ENGINES)}."
        )
    unknown = sorted(set(prove) - set(PROOF_PLATFORMS))
    if unknown:
        raise MnistEdgeError(
            f"Unknown proof platform {', '.join(unknown)}: expected {', '.join(PROOF_PLATFORMS)}."
        )
    if not 1 <= prove_images <= TEST_IMAGES:
        raise MnistEdgeError(f"Invalid proof images {prove_images}: expected 1 to {TEST_IMAGES:,}.")
    if not 1 <= golden <= TEST_IMAGES:
        raise MnistEdgeError(f"Invalid golden count {golden}: expected 1 to {TEST_IMAGES:,}.")
    if not C_IDENTIFIER.fullmatch(c_name):
        raise MnistEdgeError(
            f"Invalid --c-name {c_name!r}: expected a C identifier "
            "(a letter or _, then letters, digits or _; at most 63)."
        )
    for name, value in (("--max-arena", max_arena), ("--max-flash", max_flash)):
        if value is not None and value < 1:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive number of bytes.")


def _manifest(
    device: DeviceModel,
    out: Path,
    arena: ArenaReport,
    runs: _Runs,
    others: list[Path],
    artifacts: Path,
) -> BundleResult:
    """Everything the manifest states of the model, the runs and the runtimes that load it."""
    model, info, outputs, vectors = device.path, device.info, runs.outputs, runs.vectors
    count = len(outputs["tflm"])
    agreement = [
        bit_agreement(
            "tflm", other, outputs["tflm"].reshape(count, -1), outputs[other].reshape(count, -1)
        )
        for other in ("litert-ref", "litert")
        if other in outputs
    ]
    proofs, legacy, legacy_version = prove_runtimes(
        model, others, vectors.inputs, vectors.outputs, arena.bytes
    )
    uses = op_uses(info)
    unsupported = [f"{u.name} v{u.version}" for u in uses if not u.tflm_call]
    if unsupported:
        log.warning("No TFLM resolver call known for %s", ", ".join(unsupported))
    return BundleResult(
        out=str(out),
        model=model.name,
        kind=device.kind,
        files=[],
        input=device.input,
        output=device.output,
        preprocessing=(
            _preprocessing(device.input)
            if runs.mnist is not None
            else _tensor_preprocessing(device.input)
        ),
        labels=LABELS if runs.mnist is not None else [],
        keras_accuracy=runs.keras_accuracy,
        accuracy=runs.accuracy,
        agreement=agreement,
        ops=uses,
        # One registration per operator, whatever its versions: the resolver's template size.
        tflm_resolver=f"tflite::MicroMutableOpResolver<{len({u.name for u in uses})}>",
        tflm_calls=list(dict.fromkeys(u.tflm_call for u in uses if u.tflm_call)),
        arena_bytes=arena.bytes,
        arena=arena,
        flash_bytes=len(device.data),
        macs=count_macs(info),
        params=count_params(info),
        golden=vectors.summary(),
        min_runtime=min_runtime(info),
        proven_runtimes=proofs,
        exports=export_compat(model, info, others, arena.bytes, legacy, legacy_version),
        versions=_versions(info, artifacts),
    )


def bundle(
    artifacts: Path,
    data: MnistTest | Path | None,
    *,
    model: Path | None = None,
    out: Path | None = None,
    golden: int = DEFAULT_GOLDEN,
    c_name: str = DEFAULT_C_NAME,
    max_arena: int | None = None,
    max_flash: int | None = None,
    overwrite: bool = False,
    prove: list[str] | tuple[str, ...] = (),
    prove_cpu: str = PROOF_CPUS[0],
    prove_images: int = DEFAULT_PROOF_IMAGES,
    engines: list[str] | tuple[str, ...] = ENGINES,
    sources: Path | None = None,
    npu: list[str] | tuple[str, ...] = (),
    inputs: str | None = None,
    seed: int = DEFAULT_INPUTS_SEED,
) -> BundleResult:
    """Write the device bundle for a .tflite (default the int8 export), checked on TFLM.

    `inputs` (inputs.model_inputs: `random[:N]`, a .npy file, `mnist[:N]`; N defaults to
    `golden`): the golden vectors of any int8 model, those inputs and TFLM's outputs on them
    (accuracy only with labels). Without it, a model of MNIST's shapes is bundled as always.

    `engines`: tflm (model_data.h/.cc) and codegen (c_engine/: the model compiled to C, checked
    against TFLM here; CMSIS-NN from `sources`); with both, a C engine that cannot be made for
    want of a compiler or sources (or of a float model) is left out, with the reason. `npu`:
    Ethos-U configurations to compile for with vela (npu/; vela's estimates in the manifest).

    `prove`: platforms (options.PROOF_PLATFORMS) to prove the bundle on (MNIST's images only:
    for other inputs, `not_proven` says why). A proof whose bundled model did not load is a
    failed check (CheckFailed, after the bundle is written). Bad input: one line, no folder.
    """
    _check_options(prove, prove_images, golden, c_name, max_arena, max_flash, engines, npu)
    artifacts = Path(artifacts)
    model = Path(model) if model is not None else int8_model(artifacts)
    out = Path(out) if out is not None else artifacts / BUNDLE_DIR
    # A batch tool never prompts: an earlier bundle (its manifest) is replaced only on request.
    refuse_overwrite([out / MANIFEST], overwrite)
    device = load_device_model(model, any_shape=True)
    chosen, golden = choose_inputs(device, inputs, golden, seed, data)
    engines = list(dict.fromkeys(engines))
    refuse_for_c_engine(engines, device)

    # Budgets first: a firmware CI gating on them should not wait for the accuracy runs.
    arena = _measure_budgets(device, max_arena, max_flash)
    with _removed_on_failure(out):
        out = prepare_output_dir(out)
        # TFLM at exactly the arena the manifest states: the golden run is also the proof it
        # works.
        tflm = TFLMRunner(model, arena_size=arena.bytes, any_shape=True)
        if chosen is None:
            runs = _mnist_runs(model, artifacts, data, device, tflm, golden)
        else:
            outputs, accuracy, vectors = run_given(device, chosen, tflm)
            runs = _Runs(chosen.values, outputs, accuracy, None, vectors, None)
        others = [p for p in sorted(artifacts.glob("*.tflite")) if p.resolve() != model.resolve()]
        result = _manifest(device, out, arena, runs, others, artifacts)
        c_files, c_summary, left_out = _c_engine(engines, device, runs, sources)
        npu_files, npu_estimates = _npu(npu, model)
        proven, not_proven = _prove(prove, device, runs, tflm, others, prove_cpu, prove_images)
        result = replace(
            result,
            on_target=on_target(artifacts, device.sha256),
            proven=proven,
            not_proven=not_proven,
            engines=[e for e in engines if e != "codegen" or c_summary is not None],
            c_engine=c_summary,
            not_bundled=left_out,
            agreement=[*result.agreement, *([c_summary.host_check] if c_summary else [])],
            npu=npu_estimates,
        )
        result = _write_bundle(out, result, device.data, c_name, runs.vectors, c_files, npu_files)
    log.info("Wrote the bundle to %s", out)
    failed = [f"{p.target}: {'; '.join(p.failures)}" for p in result.proven if p.failures]
    if failed:
        raise CheckFailed(" | ".join(failed), label="proof failed")
    return result


def _measure_budgets(device: DeviceModel, max_arena, max_flash) -> ArenaReport:
    """TFLM's tensor arena, measured; CheckFailed naming every budget the model exceeds."""
    name, data = device.name, device.data
    log.info("Measuring the TFLM tensor arena of %s", name)
    arena = measure_arena(data, str(device.path), device.info)
    check_budgets(
        [
            Need("flash", name, len(data), max_flash, "--max-flash", FLASH_DETAIL),
            Need("arena", name, arena.bytes, max_arena, "--max-arena", "TFLM's tensor arena"),
        ]
    )
    return arena


def _prove(platforms, device, runs: _Runs, tflm, others, cpu, images) -> tuple[list, list[str]]:
    """Each asked-for platform proof (mnist_edge.proofs), on the first `images` test images;
    for a model run on other inputs, none, and why (they run MNIST's images)."""
    if not platforms:
        return [], []
    if runs.mnist is None:
        shape = "×".join(map(str, device.input.shape[1:]))
        why = (
            f"the platform proofs run MNIST's test images (and `mnist-edge predict` on PNGs of "
            f"them); {device.name} takes {device.input.dtype} {shape} inputs"
        )
        platforms = list(dict.fromkeys(platforms))
        log.warning("Not proving on %s: %s", ", ".join(platforms), why)
        return [], [f"{platform}: not run: {why}" for platform in platforms]
    from mnist_edge.proofs import Bundle, prove

    model, vectors, mnist = device.path, runs.vectors, runs.mnist
    host = runs.outputs["tflm"]
    if len(host) < images:
        log.info("Running TFLM on %d test images for the proofs", images)
        host = tflm.predict_raw(runs.inputs[:images])
    bundled = Bundle(model, vectors.inputs, vectors.outputs, vectors.labels)
    extras = [p for p in others if p.suffix in (".tflite", ".onnx")]
    proofs = [
        prove(
            platform,
            bundled,
            mnist.x_test[:images],
            mnist.y_test[:images],
            host[:images],
            extras,
            cpu=cpu,
            check=False,
        )
        for platform in dict.fromkeys(platforms)
    ]
    return proofs, []

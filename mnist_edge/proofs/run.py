"""prove(): a bundle run where it ships, in the target's own Python, and set against this host.

The target computes raw outputs only (`device_script.py` in the emulated linux-aarch64 device,
`proofs/legacy_script.py` in tflite-runtime 2.14's venv); every figure is computed here, with
the same code for both platforms: the golden vectors against the bundle's golden.npz (TFLM's
outputs), accuracy on the test images, and bit identity against host TFLM's outputs (the bundle's
model) and against this host's own build of the same kernels on the same file (x86-64 LiteRT
XNNPACK against aarch64 XNNPACK, and so on). On aarch64, `mnist-edge predict` also runs as a
command on PNGs made from test images.
"""

from __future__ import annotations

import json
import logging
import os
import platform as host_platform
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mnist_edge.artifacts import GOLDEN_FILE, MANIFEST
from mnist_edge.compare import accuracy, bit_agreement
from mnist_edge.errors import CheckFailed, MnistEdgeError, ModelError, first_line
from mnist_edge.options import RUNTIMES
from mnist_edge.proofs.aarch64 import prepare_aarch64
from mnist_edge.proofs.environments import (
    AARCH64,
    DEFAULT_CPU,
    PLATFORMS,
    TFLITE_RUNTIME,
    Environment,
)
from mnist_edge.proofs.legacy_env import prepare_tflite_runtime
from mnist_edge.proofs.legacy_runner import tflite_runtime_reply
from mnist_edge.records import Comparison, ModelRun, PredictCheck, Proof
from mnist_edge.runtimes import Runner, open_runner
from mnist_edge.tensors import NUM_CLASSES, ROWS

log = logging.getLogger(__name__)

DEFAULT_PREDICT_IMAGES = 5
# Emulated, a test image takes about 12-15 ms per model and runtime here (not a latency): the
# timeout of one target process is generous above that.
SECONDS_PER_IMAGE_LIMIT = 0.2
TFLITE_RUNTIME_KERNELS = "tflite-runtime 2.14, builtin kernels, no delegate"
# options.RUNTIMES names litert-ref's kernels as an x86-64 host has them; on aarch64 the same
# builtin kernels are LiteRT's NEON-optimized code (the first CONV_2D already rounds otherwise).
AARCH64_KERNELS = {"litert-ref": "LiteRT, builtin kernels (NEON-optimized on aarch64), no delegate"}


class ProofFailed(CheckFailed):
    """A proof ran and failed (a bundle model that did not load, predict wrong); `.proof` has
    every figure all the same."""

    def __init__(self, message: str, proof: Proof):
        super().__init__(message, label="proof failed")
        self.proof = proof


@dataclass(frozen=True, eq=False)
class Bundle:
    """What a proof needs of a bundle: its model and golden vectors (golden.npz's arrays)."""

    model: Path
    golden_inputs: np.ndarray
    golden_outputs: np.ndarray
    golden_labels: np.ndarray


def read_bundle(folder: Path) -> Bundle:
    """The bundle's model and golden vectors; one line if the folder is not a bundle."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise MnistEdgeError(
            f"{folder}: not a bundle (no {MANIFEST}); run `mnist-edge bundle` first."
        )
    try:
        name = json.loads(manifest.read_text())["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MnistEdgeError(f"{manifest}: unreadable ({first_line(exc)}).") from None
    model = folder / Path(str(name)).name
    if not model.is_file():
        raise ModelError(f"{model}: the bundle's model is missing.")
    golden = folder / GOLDEN_FILE
    try:
        with np.load(golden, allow_pickle=False) as npz:
            inputs, outputs, labels = npz["inputs"], npz["outputs"], npz["labels"]
    except (OSError, ValueError, KeyError) as exc:
        raise MnistEdgeError(f"{golden}: missing or unreadable ({first_line(exc)}).") from None
    if len(inputs) != len(outputs) or outputs.ndim != 2 or outputs.shape[1] != NUM_CLASSES:
        raise MnistEdgeError(f"{golden}: inputs {inputs.shape} and outputs {outputs.shape} differ.")
    return Bundle(model, inputs, outputs, labels)


def _check_arrays(
    images: np.ndarray, labels: np.ndarray, tflm: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (ROWS, ROWS):
        raise MnistEdgeError(
            f"Test images must be uint8 N×{ROWS}×{ROWS} (MNIST's own arrays); got "
            f"{images.dtype} {images.shape}."
        )
    labels, tflm = np.asarray(labels), np.asarray(tflm)
    if len(images) == 0 or len(labels) != len(images) or tflm.shape != (len(images), NUM_CLASSES):
        raise MnistEdgeError(
            f"Expected N ≥ 1 test images with N labels and N×{NUM_CLASSES} host TFLM outputs; got "
            f"{len(images)} images, {len(labels)} labels, outputs {tflm.shape}."
        )
    return images, labels, tflm


def model_inputs(runner: Runner, images: np.ndarray) -> np.ndarray:
    """Test images as a model takes them: its int8 through the runner's 256-entry table (the
    bytes quantize(to_float(x)) gives), or float32 in [0, 1]; N×28×28×1."""
    if runner.input.quantized:
        return runner._input_table.take(images).reshape(len(images), ROWS, ROWS, 1)
    return (images.astype(np.float32) / np.float32(255.0))[..., np.newaxis]


@dataclass(frozen=True)
class _Plan:
    """One model on one target runtime, and what it is compared with on this host."""

    model: Path
    runtime: str  # in the target
    host_runtime: str  # the same kernels built for this host
    golden: bool  # the bundle's model: golden vectors and host TFLM too


def _plan(target: str, bundle: Bundle, extras: list[Path]) -> list[_Plan]:
    plans = []
    for model in [bundle.model, *extras]:
        golden = model == bundle.model
        if target == TFLITE_RUNTIME:
            if model.suffix == ".tflite":
                plans.append(_Plan(model, "tflite-runtime", "litert-ref", golden))
            else:
                log.info("tflite-runtime runs .tflite files only: %s left out", model.name)
        elif model.suffix == ".onnx":
            plans.append(_Plan(model, "onnxruntime", "onnxruntime", golden))
        elif model.suffix == ".tflite":
            plans += [_Plan(model, rt, rt, golden) for rt in ("litert-ref", "litert")]
        else:
            raise ModelError(f"{model}: not a .tflite or .onnx export.")
    return plans


def _units(outputs: np.ndarray) -> str:
    return "int8 steps" if outputs.dtype == np.int8 else "probability"


def _comparison(against: str, reference: np.ndarray, outputs: np.ndarray) -> Comparison:
    agree = bit_agreement(against, "target", reference, outputs)
    return Comparison(
        against,
        agree.images,
        agree.bit_identical,
        agree.same_class,
        agree.max_abs_diff,
        _units(reference),
    )


def _run_device_job(env: Environment, job: dict, folder: Path, index: int, timeout: float) -> dict:
    """One model on one runtime in the emulated device: a process of its own."""
    request, reply = folder / f"request{index}.json", folder / f"reply{index}.json"
    request.write_text(json.dumps({"jobs": [job]}))
    command = [*env.command, "-m", "mnist_edge.proofs.device_script", str(request), str(reply)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env.env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise CheckFailed(
            f"{env.platform} proof: {Path(job['model']).name} on {job['runtime']} did not finish "
            f"in {timeout:.0f} s.",
            label="proof failed",
        ) from None
    if done.returncode != 0 or not reply.is_file():
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:200]
        raise CheckFailed(
            f"{env.platform} proof: the target's Python failed running {Path(job['model']).name} "
            f"on {job['runtime']} ({last}).",
            label="proof failed",
        )
    return json.loads(reply.read_text())


def _write_pngs(images: np.ndarray, folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        path = folder / f"test{i:05d}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(path)
    return paths


def _predict_check(
    env: Environment, model: Path, pngs: list[Path], labels: np.ndarray, arrays: np.ndarray
) -> PredictCheck:
    """`mnist-edge predict --json` in the target, against the same command's library here."""
    from mnist_edge.predict import predict

    host = predict(pngs, model=model)
    host_classes = [int(p.digit) if p.digit is not None else -1 for p in host.predictions]
    command = [*env.command, "-m", "mnist_edge", "predict", "--json", "-m", str(model)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [*command, *map(str, pngs)],
            capture_output=True,
            text=True,
            env=env.env,
            timeout=600,
            check=False,
        )
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        code, stdout, stderr = -1, "", "did not finish in 600 s"
    seconds = round(time.perf_counter() - started, 1)
    classes: list[int | None] = [None] * len(pngs)
    runtime, error = "?", None
    try:
        reply = json.loads(stdout)
        runtime = reply["runtime"]
        classes = [p["digit"] for p in reply["predictions"]]
    except (ValueError, KeyError, TypeError):
        error = (stderr.strip().splitlines() or ["no JSON on stdout"])[-1][:200]
    if code != 0 and error is None:
        error = (stderr.strip().splitlines() or [f"exit {code}"])[-1][:200]
    return PredictCheck(
        command=f"mnist-edge predict --json -m {model.name} <{len(pngs)} PNGs>",
        model=model.name,
        runtime=runtime,
        files=[p.name for p in pngs],
        labels=[int(v) for v in labels],
        classes=classes,
        host_classes=host_classes,
        array_classes=[int(v) for v in arrays.argmax(axis=1)],
        exit_code=code,
        error=error,
        seconds=seconds,
    )


def _host_reference(plans, images, count):
    """Every model's inputs, and each (model, host runtime)'s outputs on this host."""
    log.info("Running %d models on this host's kernels, for reference", count)
    inputs: dict[Path, np.ndarray] = {}
    host: dict[tuple[Path, str], np.ndarray] = {}
    for plan in plans:
        if (plan.model, plan.host_runtime) in host:
            continue
        runner = open_runner(plan.model, plan.host_runtime)
        if plan.model not in inputs:
            inputs[plan.model] = model_inputs(runner, images)
        host[plan.model, plan.host_runtime] = runner.predict_raw(inputs[plan.model])
    return inputs, host


def _model_runs(plans, outputs, bundle, labels, tflm, host) -> list[ModelRun]:
    """Each plan's run in the target, compared with the golden vectors, host TFLM and the same
    runtime on this host (the shared comparison, compare.bit_agreement)."""
    machine = host_platform.machine()
    images = len(labels)
    runs = []
    for plan, (golden_out, test_out, loaded, error, kernels, seconds) in zip(
        plans, outputs, strict=True
    ):
        run = ModelRun(
            model=plan.model.name,
            runtime=plan.runtime,
            kernels=kernels,
            loaded=loaded,
            error=error,
            images=images if loaded else 0,
            seconds=seconds,
        )
        if loaded:
            golden = {}
            if plan.golden:
                agree = bit_agreement("golden", plan.runtime, bundle.golden_outputs, golden_out)
                golden = {
                    "golden_identical": agree.bit_identical,
                    "golden_count": agree.images,
                    "golden_max_abs_diff": agree.max_abs_diff,
                }
            run = replace(
                run,
                **golden,
                accuracy=accuracy(test_out, labels),
                vs_host_tflm=_comparison(f"host tflm ({machine})", tflm, test_out)
                if plan.golden
                else None,
                vs_host=_comparison(
                    f"host {plan.host_runtime} ({machine})",
                    host[plan.model, plan.host_runtime],
                    test_out,
                ),
            )
        runs.append(run)

    return runs


def _between_runtimes(runs, outputs, platform) -> list[Comparison]:
    """Two runtimes of the target on the same model, against each other."""
    between = []
    by_model: dict[str, list[tuple[str, np.ndarray]]] = {}
    for run, (_, test_out, loaded, *_) in zip(runs, outputs, strict=True):
        if loaded:
            by_model.setdefault(run.model, []).append((run.runtime, test_out))
    for model, pairs in by_model.items():
        for i, (a, out_a) in enumerate(pairs):
            for b, out_b in pairs[i + 1 :]:
                between.append(_comparison(f"{model}: {b} against {a} ({platform})", out_a, out_b))

    return between


def _failures(runs, plans, predict_check) -> list[str]:
    """Why the proof failed: the bundle's model did not load, or predict went wrong."""
    failures = [
        f"{r.model} did not load on {r.runtime}: {r.error}"
        for r, plan in zip(runs, plans, strict=True)
        if plan.golden and not r.loaded
    ]
    if predict_check is not None and not predict_check.matches_host:
        failures.append(
            f"mnist-edge predict exited {predict_check.exit_code} "
            f"({predict_check.error or 'no error'}) with classes {predict_check.classes}; "
            f"this host's: {predict_check.host_classes}"
        )
    return failures


def _run_target(platform, env, plans, bundle, arrays, inputs, predict_images, workers):
    """Every plan run in the target's environment, from files in a scratch folder: the raw
    outputs per plan, what the target says of itself, and the predict check (aarch64 only)."""
    images = arrays[0]
    with tempfile.TemporaryDirectory(prefix="mnist-edge-proof-") as tmp:
        folder = Path(tmp)
        for i, model in enumerate(inputs):
            np.save(folder / f"images{i}.npy", inputs[model])
        np.save(folder / "golden.npy", bundle.golden_inputs)
        image_files = {model: folder / f"images{i}.npy" for i, model in enumerate(inputs)}
        if platform == AARCH64:
            outputs, meta, predict_check = _run_aarch64(
                env,
                plans,
                bundle,
                arrays,
                image_files,
                folder,
                predict_images,
                workers,
            )
        else:
            outputs, meta = _run_tflite_runtime(env, plans, bundle, inputs, len(images))
            predict_check = None
    return outputs, meta, predict_check


def _check_request(platform, predict_images, bundle_dir, extra_models):
    """The bundle and the extra models, once the request is known to be sound."""
    if platform not in PLATFORMS:
        raise MnistEdgeError(
            f"Unknown proof platform {platform!r}: expected {' or '.join(PLATFORMS)}."
        )
    if predict_images < 0:
        raise MnistEdgeError(f"Invalid predict_images {predict_images}: expected 0 or more.")
    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else read_bundle(bundle_dir)
    extras = [Path(p) for p in extra_models if Path(p).resolve() != bundle.model.resolve()]
    for path in extras:
        if not path.is_file():
            raise ModelError(f"{path}: no such model file.")
    return bundle, extras


def prove(
    platform: str,
    bundle_dir: Path | Bundle,
    test_images: np.ndarray,
    labels: np.ndarray,
    host_tflm_outputs: np.ndarray,
    extra_models: Sequence[Path] = (),
    *,
    cpu: str = DEFAULT_CPU,
    predict_images: int = DEFAULT_PREDICT_IMAGES,
    workers: int | None = None,
    debian_mirror: str | None = None,
    base_python: Path | str | None = None,
    check: bool = True,
) -> Proof:
    """Prove a bundle on `platform` (linux-aarch64 or tflite-runtime-2.14).

    `bundle_dir` is a bundle folder (its manifest names the model; golden.npz), or a `Bundle`
    made before the folder is written (so `bundle()` can put the proof in its manifest).

    `test_images` are uint8 N×28×28 with their `labels`, and `host_tflm_outputs` what this host's
    TFLM computed for them with the bundle's model. On linux-aarch64 the bundle's model runs on
    litert-ref and litert (XNNPACK), each extra .tflite likewise and each extra .onnx on
    onnxruntime, in `workers` emulated processes at once (default: one per core); then
    `mnist-edge predict` on `predict_images` PNGs. On tflite-runtime-2.14 the bundle's model and
    each extra .tflite load (or are refused, with the reason) and run. The environment is
    prepared first (see environments.py). Raises ProofFailed (a CheckFailed, exit 1) when the
    bundle's model did not load or predict went wrong, unless `check` is off.
    """
    bundle, extras = _check_request(platform, predict_images, bundle_dir, extra_models)
    images, labels, tflm = _check_arrays(test_images, labels, host_tflm_outputs)
    plans = _plan(platform, bundle, extras)

    # This host first: every model opens here (a bad file stops the proof before it prepares
    # anything), and gives the inputs and the reference outputs.
    inputs, host = _host_reference(plans, images, len(set(extras)) + 1)

    env = prepare(platform, cpu=cpu, debian_mirror=debian_mirror, base_python=base_python)
    if env.built:
        log.info("Prepared %s (%s) in %.0f s", env.description, ", ".join(env.built), env.seconds)

    started = time.perf_counter()
    outputs, meta, predict_check = _run_target(
        platform, env, plans, bundle, (images, labels, tflm), inputs, predict_images, workers
    )
    run_seconds = round(time.perf_counter() - started, 1)

    runs = _model_runs(plans, outputs, bundle, labels, tflm, host)
    between = _between_runtimes(runs, outputs, platform)
    failures = _failures(runs, plans, predict_check)
    proof = Proof(
        target=platform,
        platform=env.description,
        emulated=env.emulated,
        cpu=env.cpu,
        cpu_features=meta.get("cpu_features", []),
        python=meta.get("python", "?"),
        packages=meta.get("packages", {}),
        bundle_model=bundle.model.name,
        golden_count=len(bundle.golden_inputs),
        images=len(images),
        runs=runs,
        predict=predict_check,
        environment=env.layers,
        built=list(env.built),
        prepare_seconds=env.seconds,
        run_seconds=run_seconds,
        failures=failures,
        warnings=list(env.warnings),
        between_runtimes=between,
    )
    for warning in env.warnings:
        log.warning("%s: %s", platform, warning)
    log.info("Proved %s on %s in %.0f s", bundle.model.name, env.description, run_seconds)
    if check and failures:
        raise ProofFailed(f"{platform}: " + "; ".join(failures), proof)
    return proof


def _run_aarch64(
    env: Environment,
    plans: list[_Plan],
    bundle: Bundle,
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    image_files: dict[Path, Path],
    folder: Path,
    predict_images: int,
    workers: int | None,
) -> tuple[list[tuple], dict, PredictCheck | None]:
    images, labels, tflm = test
    jobs = []
    for i, plan in enumerate(plans):
        runs = [{"inputs": str(image_files[plan.model]), "outputs": str(folder / f"out{i}.npy")}]
        if plan.golden:
            runs.append(
                {"inputs": str(folder / "golden.npy"), "outputs": str(folder / f"gold{i}.npy")}
            )
        jobs.append({"model": str(plan.model.resolve()), "runtime": plan.runtime, "runs": runs})
    timeout = 600 + SECONDS_PER_IMAGE_LIMIT * (len(images) + len(bundle.golden_inputs))
    workers = max(1, workers or os.cpu_count() or 1)
    log.info(
        "Running %d model × runtime pairs on %d images in %s (%d at a time)",
        len(jobs),
        len(images),
        env.description,
        workers,
    )
    predict_check = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_run_device_job, env, job, folder, i, timeout) for i, job in enumerate(jobs)
        ]
        if predict_images:
            count = min(predict_images, len(images))
            pngs = _write_pngs(images[:count], folder / "pngs")
            predict_future = pool.submit(
                _predict_check, env, bundle.model, pngs, labels[:count], tflm[:count]
            )
        replies = [f.result() for f in futures]
        if predict_images:
            predict_check = predict_future.result()
    outputs = []
    for i, (plan, reply) in enumerate(zip(plans, replies, strict=True)):
        result = reply["results"][0]
        loaded = result["loaded"]
        test_out = np.load(folder / f"out{i}.npy") if loaded else None
        golden_out = np.load(folder / f"gold{i}.npy") if loaded and plan.golden else None
        kernels = (
            AARCH64_KERNELS.get(plan.runtime) or result["kernels"] or RUNTIMES[plan.runtime][1]
        )
        outputs.append((golden_out, test_out, loaded, result["error"], kernels, result["seconds"]))
    meta = {k: v for k, v in replies[0].items() if k != "results"} if replies else {}
    if meta.get("machine") not in (None, "aarch64"):
        raise CheckFailed(
            f"{env.platform} proof: the target's Python reports machine {meta['machine']}, "
            "not aarch64.",
            label="proof failed",
        )
    return outputs, meta, predict_check


def _run_tflite_runtime(
    env: Environment,
    plans: list[_Plan],
    bundle: Bundle,
    inputs: dict[Path, np.ndarray],
    count: int,
) -> tuple[list[tuple], dict]:
    jobs: list[tuple[Path, np.ndarray | None]] = []
    slots = []
    for plan in plans:
        golden = None
        if plan.golden:
            golden = len(jobs)
            jobs.append((plan.model, bundle.golden_inputs))
        slots.append((golden, len(jobs)))
        jobs.append((plan.model, inputs[plan.model]))
    log.info("Running %d models on %d images in tflite-runtime", len(plans), count)
    timeout = 600 + SECONDS_PER_IMAGE_LIMIT * count * len(plans)
    try:
        reply = tflite_runtime_reply(Path(env.command[0]), jobs, timeout=timeout)
    except MnistEdgeError as exc:
        raise CheckFailed(f"{env.platform} proof: {exc}", label="proof failed") from None
    outputs = []
    for golden, test in slots:
        run = reply.runs[test]
        golden_out = reply.runs[golden].outputs if golden is not None else None
        outputs.append(
            (golden_out, run.outputs, run.loaded, run.error, TFLITE_RUNTIME_KERNELS, run.seconds)
        )
    packages = {"tflite-runtime": reply.version}
    if reply.numpy:
        packages["numpy"] = reply.numpy
    meta = {"python": reply.python or "?", "packages": packages, "cpu_features": []}
    return outputs, meta


def prepare(
    platform: str,
    *,
    cpu: str = DEFAULT_CPU,
    debian_mirror: str | None = None,
    base_python: Path | str | None = None,
) -> Environment:
    """The environment of a proof platform, from the cache or prepared now (see the module doc)."""
    if platform == AARCH64:
        return prepare_aarch64(cpu, debian_mirror)
    if platform == TFLITE_RUNTIME:
        return prepare_tflite_runtime(base_python)
    raise MnistEdgeError(f"Unknown proof platform {platform!r}: expected {' or '.join(PLATFORMS)}.")

"""Firmware: the int8 model on microcontrollers (Cortex-M; RISC-V for the C engine), built, run
in QEMU and measured.

For each CPU × engine × kernel set this generates a small firmware project: the one harness
(harness.py, templates/: startup, linker script, main.c reading the inputs from the host
through semihosting, a Makefile) and the engine's files (cengine.py: the model compiled to C;
tflm/: TensorFlow Lite Micro, its library compiled once per configuration into the cache),
links, runs the ELF in QEMU with instruction counting (`qemu`), and checks every output byte
against the host TFLM interpreter. The results say what the firmware costs, the same way for
every engine: flash and RAM by role, stack, instructions per inference and per layer.

    report = firmware(Path("artifacts/model_int8.tflite"), images, labels,
                      cpus=["cortex-m4"], kernels=["cmsis-nn"], out=Path("artifacts/firmware"))
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.artifacts import FIRMWARE_JSON, load_record, record_payload
from mnist_edge.device import DeviceModel, Need, check_budgets, load_device_model
from mnist_edge.errors import CheckFailed, MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.files import (
    json_bytes,
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    write_files_atomic,
)
from mnist_edge.firmware.boards import BOARDS, KERNELS, Board, board_for
from mnist_edge.firmware.build import find_toolchain
from mnist_edge.firmware.cengine import CodegenEngine
from mnist_edge.firmware.configs import Config, Engine
from mnist_edge.firmware.project import ProjectInputs
from mnist_edge.firmware.qemu import find_qemu
from mnist_edge.firmware.readme import firmware_readme
from mnist_edge.firmware.tflm import TflmEngine
from mnist_edge.inputs import ModelInputs, mnist_inputs
from mnist_edge.records import FirmwareReport, FirmwareResult
from mnist_edge.sources import SourceTree, prepare_sources
from mnist_edge.tensors import IMAGE_SHAPE, NUM_CLASSES

__all__ = [
    "BOARDS",
    "KERNELS",
    "FirmwareReport",
    "FirmwareResult",
    "firmware",
]

log = logging.getLogger(__name__)


LICENSES_DIR = "LICENSES"
MAX_IMAGES = 10_000
# The engines `firmware` can be given, by the name users pass (options.FIRMWARE_ENGINES).
ENGINES = {engine.name: engine for engine in (TflmEngine(), CodegenEngine())}


# ----------------------------------------------------------------------------- checks


def _check_images(images: np.ndarray, labels: np.ndarray) -> None:
    """MNIST test images and their labels, as the firmware took them before `ModelInputs`."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE[:2]:
        raise MnistEdgeError(
            f"Images | Received {images.dtype} {images.shape}. Note: expected uint8 N×28×28 "
            "(MNIST test images)."
        )
    if not 1 <= len(images) <= MAX_IMAGES:
        raise MnistEdgeError(f"Invalid image count {len(images)}: expected 1 to {MAX_IMAGES:,}.")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise MnistEdgeError(
            f"Labels | Received {labels.dtype} {labels.shape}. Note: expected integers, "
            f"shape ({len(images)},)."
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise MnistEdgeError(
            f"Labels | Received values {labels.min()} to {labels.max()}. Note: expected 0 to "
            f"{NUM_CLASSES - 1}."
        )


def _check_options(
    cpus: list[str],
    kernels: list[str],
    images: ModelInputs | np.ndarray,
    labels: np.ndarray | None,
    max_flash: int | None,
    max_ram: int | None,
    timeout_s: float,
) -> list[Board]:
    if not cpus:
        raise MnistEdgeError(f"No CPU given: expected one or more of {', '.join(BOARDS)}.")
    boards = [board_for(cpu) for cpu in dict.fromkeys(cpus)]
    if not kernels:
        raise MnistEdgeError(f"No kernels given: expected one or more of {', '.join(KERNELS)}.")
    for name in kernels:
        if name not in KERNELS:
            raise MnistEdgeError(f"Unknown kernels {name!r}: expected one of {', '.join(KERNELS)}.")
    if not isinstance(images, ModelInputs):
        _check_images(images, labels)
    elif not 1 <= images.count <= MAX_IMAGES:
        raise MnistEdgeError(f"Invalid input count {images.count}: expected 1 to {MAX_IMAGES:,}.")
    for name, value in (("max_flash", max_flash), ("max_ram", max_ram)):
        if value is not None and value <= 0:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive number of bytes.")
    if timeout_s <= 0:
        raise MnistEdgeError(f"Invalid timeout {timeout_s:g} s: expected a positive number.")
    return boards


def _check_model(model: Path) -> DeviceModel:
    """The model, read and parsed once; ModelError for anything no firmware can run (each
    engine then says what it cannot compile)."""
    return load_device_model(model, int8_only=True, any_shape=True)


def _check_engines(engines) -> list[str]:
    engines = list(dict.fromkeys(engines))
    unknown = [name for name in engines if name not in ENGINES]
    if not engines or unknown:
        raise MnistEdgeError(
            f"Unknown engine {', '.join(map(repr, unknown)) or 'none'}: expected one or more "
            f"of {', '.join(ENGINES)}."
        )
    return engines


def _check_budgets(results: list[FirmwareResult], max_flash: int | None, max_ram: int | None):
    needs = []
    for r in results:
        who = r.label
        needs.append(Need("flash", who, r.flash_bytes, max_flash, "--max-flash", "the whole ELF"))
        ram = f"{r.static_bytes:,} static + {r.stack_bytes:,} stack"
        needs.append(Need("RAM", who, r.ram_bytes, max_ram, "--max-ram", ram))
    check_budgets(needs)


# ----------------------------------------------------------------------------- one configuration


def _golden(model: Path, inputs: ModelInputs) -> np.ndarray:
    """Host TFLM's outputs for the inputs (the tflite-micro interpreter): the golden vectors."""
    from mnist_edge.runtimes import TFLMRunner

    return TFLMRunner(model, any_shape=True).predict_raw(inputs.values)


def _earlier_projects(out: Path) -> list[str]:
    """The project folders an earlier firmware.json in `out` lists."""
    try:
        record = load_record(out.parent, "firmware", out / FIRMWARE_JSON)
    except MnistEdgeError:
        return []  # unreadable: its folders are left alone, as if there were none
    return [result.project for result in record.results] if record is not None else []


def _publish(staging: Path, out: Path, names: list[str], stale: list[str]) -> None:
    """Move the staged folders into out, replacing earlier ones only once all are staged; the
    earlier run's other project folders go too, so out holds one run's results."""
    trash = Path(tempfile.mkdtemp(prefix=".firmware-old-", dir=out))
    try:
        for name in names:
            if (out / name).exists():
                os.replace(out / name, trash / name)
            os.replace(staging / name, out / name)
        for name in stale:
            if name not in names and "/" not in name and (out / name).is_dir():
                os.replace(out / name, trash / name)
    except OSError as exc:
        raise MnistEdgeError(f"Cannot write {out / name}: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def _project_inputs(device: DeviceModel, inputs: ModelInputs, tree: SourceTree) -> ProjectInputs:
    """What every configuration's project is generated from: the model, its inputs as it takes
    them, and host TFLM's outputs for them (the golden vectors)."""
    golden = _golden(device.path, inputs)
    return ProjectInputs(
        model_name=device.name,
        model=device.data,
        model_sha256=device.sha256,
        info=device.info,
        inputs=np.ascontiguousarray(inputs.values),
        indices=inputs.indices,
        labels=inputs.labels_or_none,
        golden=np.ascontiguousarray(golden),
        sources_root=str(tree.root),
        has_labels=inputs.labels is not None,
        description=inputs.description,
    )


def _built_and_described(
    config: Config, staging: Path, run: bool, timeout_s: float
) -> FirmwareResult:
    """One configuration built (and run) by its engine, its README written beside it, its
    figures logged."""
    project = staging / config.name
    result, _ = config.engine.build(config, project, run, timeout_s)
    readme = firmware_readme(config, result, config.engine.readme_values(config))
    (project / "README.md").write_bytes(readme)
    log.info(
        "%s: golden %d/%d, %s instructions per inference, flash %s, RAM %s",
        config.label,
        result.golden_identical,
        result.golden_count,
        f"{result.instructions_per_inference:,}" if result.ran else "-",
        f"{result.flash_bytes:,}",
        f"{result.ram_bytes:,}",
    )
    return result


def _configurations(
    boards: list[Board], engines: list[str], kernels: list[str], device: DeviceModel
) -> tuple[list[tuple[Engine, Board, str]], list[str]]:
    """Every (engine, board, kernels) to build, and why the others asked for cannot be. A pair
    asked for by name that cannot be built is refused in one line; with `all`, it is left out
    and said so (the report lists it)."""
    chosen, refused = [], []
    for board in boards:
        for name in engines:
            engine = ENGINES[name]
            reason = engine.refusal(board, device)
            if reason:
                refused.append(f"{board.cpu} {name}: {reason}")
                continue
            chosen += [(engine, board, k) for k in engine.kernel_sets(kernels)]
    if refused and (len(boards) * len(engines) == 1 or not chosen):
        exceeds = all("needs at least" in why for why in refused)
        error = CheckFailed if exceeds else ModelError
        raise error(("Does not fit: " if exceeds else "") + "; ".join(refused) + ".")
    for why in refused:
        log.warning("Not building %s", why)
    return chosen, refused


def _copy_licenses(tree: SourceTree, folder: Path) -> None:
    """The pinned sources' licenses, which travel with the firmware built from them."""
    folder.mkdir()
    for repo, path in tree.licenses().items():
        shutil.copyfile(path, folder / f"{repo.replace('/', '_')}.txt")


def _skipped(
    out: Path, model: Path, data: bytes, images: int, reason: str, description: str
) -> FirmwareReport:
    """The record of a run that could not build: which model, and why (for the report)."""
    log.warning("Skipping the firmware: %s", reason)
    report = FirmwareReport(
        out=str(out),
        model=model.name,
        model_sha256=sha256_bytes(data),
        images=images,
        results=(),
        toolchain="",
        qemu=None,
        sources={},
        mnist_edge=__version__,
        skipped=reason,
        inputs=description,
    )
    prepare_output_dir(out)
    write_files_atomic({out / FIRMWARE_JSON: json_bytes(record_payload(report))})
    return report


def firmware(
    model: Path,
    images: ModelInputs | np.ndarray,
    labels: np.ndarray | None = None,
    *,
    cpus: list[str],
    kernels: list[str],
    out: Path,
    sources: Path | None = None,
    max_flash: int | None = None,
    max_ram: int | None = None,
    run: bool = True,
    overwrite: bool = False,
    timeout_s: float = 300,
    skip_missing_tools: bool = False,
    engines: list[str] | tuple[str, ...] = ("tflm",),
    optimise: str = "auto",
) -> FirmwareReport:
    """Build, run and measure the model's firmware for every CPU × engine × kernels; write `out`.

    `engines`: tflm (the interpreter, with `kernels`) and codegen (the model compiled to C,
    CMSIS-NN's kernels). A pair that cannot be built (TFLM on a 16 KB board) is refused in one
    line when it is all that was asked for, else left out and listed in `not_built`.
    `optimise`: the C engine's plan (speed, size, or auto: speed where it fits the board).

    `images` are the model's inputs (inputs.ModelInputs: MNIST, random or a file's), or MNIST
    test images (uint8 N×28×28, test-set indices 0..N-1) with their `labels`.
    Raises CheckFailed, writing nothing, when a configuration exceeds max_flash or max_ram. An
    output that differs from host TFLM's is written down, not raised: the report is then false
    and its `failures` say where (the CLI exits 1 on it, as for verify). With
    `skip_missing_tools`, a missing toolchain or QEMU is not an error: the record written says
    the firmware was skipped, and why (make demo on a machine without them).
    """
    boards = _check_options(cpus, kernels, images, labels, max_flash, max_ram, timeout_s)
    engines = _check_engines(engines)
    kernels = list(dict.fromkeys(kernels))
    model = Path(model)
    device = _check_model(model)
    if not isinstance(images, ModelInputs):
        images = mnist_inputs(device.input, np.asarray(images), np.asarray(labels))
    chosen, refused = _configurations(boards, engines, kernels, device)
    out = Path(out)
    names = [engine.project_name(board, k) for engine, board, k in chosen]
    refuse_overwrite([out / FIRMWARE_JSON, *(out / name for name in names)], overwrite)
    arches = list(dict.fromkeys(board.arch for _, board, _ in chosen))
    try:
        toolchains = {arch: find_toolchain(arch) for arch in arches}
        needed = {b.qemu: None for _, b, _ in chosen if run}
        qemu_version = "; ".join(dict.fromkeys(find_qemu(q)[1] for q in needed)) or None
    except MissingDependencyError as exc:
        if not skip_missing_tools:
            raise
        return _skipped(out, model, device.data, images.count, str(exc), images.description)
    prepare_output_dir(out)
    tree = prepare_sources(sources)
    inputs = _project_inputs(device, images, tree)
    configs = [Config(inputs, b, k, tree, toolchains[b.arch], e, optimise) for e, b, k in chosen]
    staging = Path(tempfile.mkdtemp(prefix=".firmware-staging-", dir=out))
    try:
        results = [_built_and_described(c, staging, run, timeout_s) for c in configs]
        _check_budgets(results, max_flash, max_ram)
        _copy_licenses(tree, staging / LICENSES_DIR)
        report = FirmwareReport(
            out=str(out),
            model=model.name,
            model_sha256=inputs.model_sha256,
            images=images.count,
            results=tuple(results),
            toolchain="; ".join(t.version for t in toolchains.values()),
            qemu=qemu_version,
            sources=tree.describe(),
            mnist_edge=__version__,
            not_built=refused,
            inputs=images.description,
        )
        _publish(staging, out, [*names, LICENSES_DIR], _earlier_projects(out))
        write_files_atomic({out / FIRMWARE_JSON: json_bytes(record_payload(report))})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report

"""Firmware: the int8 model on Cortex-M microcontrollers, built, run in QEMU and measured.

For each CPU and kernel set this generates a small firmware project (templates/: startup, linker
script, main.cc, the model and images as C arrays, a Makefile), compiles TensorFlow Lite Micro
once per configuration into the cache (`build`), links, runs the ELF in QEMU with instruction
counting (`qemu`), and checks every output byte against the host TFLM interpreter. The results
say what the firmware costs: flash by component, RAM, arena, stack, instructions per inference.

    report = firmware(Path("artifacts/model_int8.tflite"), images, labels,
                      cpus=["cortex-m4"], kernels=["cmsis-nn"], out=Path("artifacts/firmware"))
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge import __version__
from mnist_edge.artifacts import FIRMWARE_JSON, load_record, record_payload
from mnist_edge.compare import bit_agreement
from mnist_edge.device import DeviceModel, Need, check_budgets, load_device_model
from mnist_edge.errors import MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.files import (
    cache_dir,
    json_bytes,
    prepare_output_dir,
    refuse_overwrite,
    sha256_bytes,
    sha256_file,
    write_files_atomic,
)
from mnist_edge.firmware.boards import BOARDS, KERNELS, Board, board_for
from mnist_edge.firmware.build import (
    FLASH_COMPONENTS,
    Library,
    Toolchain,
    build_library,
    find_toolchain,
    library_key,
    make,
    measure,
)
from mnist_edge.firmware.project import (
    LIBRARY_KERNELS,
    STACK_SIZE,
    ProjectInputs,
    model_data,
    project_files,
    unsupported_ops,
)
from mnist_edge.firmware.qemu import QemuRun, find_qemu, qemu_command, run_firmware
from mnist_edge.firmware.readme import firmware_readme
from mnist_edge.firmware.sources import SourceTree, prepare_sources
from mnist_edge.model_info import count_macs
from mnist_edge.records import Agreement, FirmwareReport, FirmwareResult, FlashSplit
from mnist_edge.tensors import TensorSpec

__all__ = [
    "BOARDS",
    "KERNELS",
    "FirmwareReport",
    "FirmwareResult",
    "FlashSplit",
    "firmware",
]

log = logging.getLogger(__name__)


LICENSES_DIR = "LICENSES"
ELF = "firmware.elf"
MAX_IMAGES = 10_000
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
ARENA_ALIGNMENT = 16


# ----------------------------------------------------------------------------- checks


def _check_options(
    cpus: list[str],
    kernels: list[str],
    images: np.ndarray,
    labels: np.ndarray,
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
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
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
    for name, value in (("max_flash", max_flash), ("max_ram", max_ram)):
        if value is not None and value <= 0:
            raise MnistEdgeError(f"Invalid {name} {value}: expected a positive number of bytes.")
    if timeout_s <= 0:
        raise MnistEdgeError(f"Invalid timeout {timeout_s:g} s: expected a positive number.")
    return boards


def _check_model(model: Path) -> DeviceModel:
    """The model, read and parsed once; ModelError for anything the firmware cannot run."""
    device = load_device_model(model, int8_only=True)
    missing = unsupported_ops(device.info)
    if missing:
        raise ModelError(
            f"{model}: uses {', '.join(missing)}, which the firmware's TFLM library does not "
            f"compile (it has {', '.join(LIBRARY_KERNELS)})."
        )
    return device


def _check_budgets(results: list[FirmwareResult], max_flash: int | None, max_ram: int | None):
    needs = []
    for r in results:
        who = f"{r.cpu} {r.kernels}"
        needs.append(Need("flash", who, r.flash_bytes, max_flash, "--max-flash", "the whole ELF"))
        ram = f"{r.static_bytes:,} static + {r.stack_bytes:,} stack"
        needs.append(Need("RAM", who, r.ram_bytes, max_ram, "--max-ram", ram))
    check_budgets(needs)


# ----------------------------------------------------------------------------- one configuration


def _golden(model: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, TensorSpec]:
    """The model's int8 inputs for the images and host TFLM's int8 outputs for them."""
    from mnist_edge.data import to_float
    from mnist_edge.runtimes import TFLMRunner
    from mnist_edge.tensors import quantize

    runner = TFLMRunner(model)
    inputs = quantize(to_float(images), runner.input)
    return inputs, runner.predict_raw(inputs), runner.input


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@dataclass(frozen=True)
class _Built:
    elf: Path
    map_file: Path
    seconds: float


def _link(
    project: Path,
    board: Board,
    library: Library,
    tree: SourceTree,
    toolchain: Toolchain,
    label: str,
    build: str = "build",
    elf: str = ELF,
    defines: str = "",
) -> _Built:
    """Compile the application and link it with the cached library, by the project's Makefile."""
    variables = {
        "SOURCES": str(tree.root),
        "LIB_DIR": str(library.folder),
        "BUILD": build,
        "ELF": elf,
        "APP_DEFINES": defines,
    }
    log_file = cache_dir() / "firmware" / "logs" / f"{project.name}-{build}.log"
    try:
        run = make(
            project,
            [elf],
            variables,
            toolchain,
            log_file,
            f"Building the firmware for {label}",
            old=(str(library.archive),),
        )
    except MnistEdgeError as exc:
        if "overflowed" not in str(exc):
            raise
        raise MnistEdgeError(
            f"The firmware for {label} does not fit {board.machine}'s {board.code.name} "
            f"({board.code.length:,} bytes for code, constants, the model and the images): "
            f"{exc} Run fewer images."
        ) from None
    return _Built(project / elf, project / elf.replace(".elf", ".map"), run.seconds)


def _run(board: Board, elf: Path, timeout_s: float, label: str) -> QemuRun:
    run = run_firmware(board, elf, timeout_s)
    error = run.uart.error
    if run.uart.summary is None or error is not None:
        reason = error or (run.stderr.strip().splitlines() or ["no RESULT line"])[-1]
        raise MnistEdgeError(
            f"The firmware for {label} stopped with status {run.returncode}: {reason}."
        )
    return run


@dataclass(frozen=True)
class _Config:
    """One CPU × kernels of a firmware run, and what every configuration shares."""

    inputs: ProjectInputs
    board: Board
    kernels: str
    tree: SourceTree
    toolchain: Toolchain

    @property
    def label(self) -> str:
        return f"{self.board.cpu} {self.kernels}"

    @property
    def name(self) -> str:
        return f"{self.board.cpu}-{self.kernels}"


def _build(config: _Config, project: Path, run: bool, timeout_s: float, host_arena: int | None):
    """Generate the project, build TFLM (cached) and link; when running, first link a sizing
    build that runs one image with the largest arena the board allows: TFLM then says how much
    arena this CPU and these kernels use, and the firmware shipped gets exactly that. Not
    running, the host's measure stands in (64-bit: a little more than a 32-bit MCU needs)."""
    board, label = config.board, config.label
    sizing_arena = _round_up(board.data.length // 2, 1024) if run else host_arena
    files = project_files(config.inputs, board, config.kernels, sizing_arena)
    for file_name, content in files.items():
        (project / file_name).write_bytes(content)
    library = build_library(
        project,
        library_key(files["tflm.mk"].decode(), config.toolchain, config.tree),
        f"TFLM for {label}",
        config.tree,
        config.toolchain,
    )
    started = time.perf_counter()
    arena = sizing_arena
    if run:
        sizing = _link(
            project,
            board,
            library,
            config.tree,
            config.toolchain,
            label,
            build="build-sizing",
            elf="sizing.elf",
            defines="-DIMAGES_TO_RUN=1",
        )
        probe = _run(board, sizing.elf, timeout_s, label)
        arena = _round_up(probe.uart.summary.arena_used_bytes, ARENA_ALIGNMENT)
        for name, text in model_data(config.inputs, arena).items():
            (project / name).write_bytes(text.encode())
    built = _link(project, board, library, config.tree, config.toolchain, label)
    return library, built, arena, time.perf_counter() - started


def _checked(inputs: ProjectInputs, device: QemuRun) -> tuple[Agreement, tuple[int, ...]]:
    """The device's outputs against host TFLM's (the golden vectors), image by image: the
    shared comparison, and the test indices of the images that differ."""
    records = device.uart.images
    golden = {int(i): g for i, g in zip(inputs.indices, inputs.golden, strict=True)}
    known = [r for r in records if r.index in golden]
    ours = np.array([r.outputs for r in known], dtype=np.int8).reshape(-1, inputs.golden.shape[1])
    theirs = np.array([golden[r.index] for r in known], dtype=np.int8).reshape(ours.shape)
    agreement = bit_agreement("host tflm", "firmware", theirs, ours)
    unknown = tuple(r.index for r in records if r.index not in golden)
    return agreement, tuple(known[i].index for i in agreement.mismatches) + unknown


def _configuration(
    config: _Config, staging: Path, run: bool, timeout_s: float, host_arena: int | None
) -> tuple[FirmwareResult, QemuRun | None]:
    """Build (and run) one configuration in staging/NAME and measure it."""
    board, inputs, name = config.board, config.inputs, config.name
    project = staging / name
    project.mkdir()
    library, built, arena, build_seconds = _build(config, project, run, timeout_s, host_arena)
    sizes = measure(built.elf, built.map_file)
    device = _run(board, built.elf, timeout_s, config.label) if run else None
    for leftover in ("build", "build-sizing", "sizing.elf", "sizing.map"):
        path = project / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    macs = count_macs(inputs.info)
    images = len(inputs.inputs)
    figures = dict(
        golden_count=0,
        golden_identical=0,
        correct=0,
        accuracy=None,
        agreement_with_host_tflm=None,
        mismatches=(),
        instructions_per_inference=None,
        instructions_min=None,
        instructions_max=None,
        stack_bytes=STACK_SIZE,
        run_seconds=None,
        exit_status=None,
    )
    if device is not None:
        agreement, mismatches = _checked(inputs, device)
        counts = [r.instructions for r in device.uart.images]
        median = int(statistics.median(counts)) if counts else None
        summary = device.uart.summary
        figures = dict(
            golden_count=summary.count,
            golden_identical=summary.identical,
            correct=summary.correct,
            accuracy=round(summary.correct / images, 6),
            agreement_with_host_tflm=round(agreement.same_class / images, 6),
            mismatches=mismatches,
            instructions_per_inference=median,
            instructions_min=min(counts) if counts else None,
            instructions_max=max(counts) if counts else None,
            stack_bytes=summary.stack_peak_bytes,
            run_seconds=round(device.seconds, 1),
            exit_status=device.returncode,
        )
    median = figures["instructions_per_inference"]
    return FirmwareResult(
        cpu=board.cpu,
        board=board.machine,
        kernels=config.kernels,
        model=inputs.model_name,
        model_sha256=inputs.model_sha256,
        images=images,
        macs=macs,
        instructions_per_mac=round(median / macs, 4) if median and macs else None,
        isa_limit_instructions=-(-macs // board.macs_per_instruction),
        flash_bytes=sizes.flash_bytes,
        flash=FlashSplit(**{c: sizes.flash[c] for c in FLASH_COMPONENTS}),
        ram_bytes=sizes.static_bytes + figures["stack_bytes"],
        static_bytes=sizes.static_bytes,
        arena_bytes=arena,
        arena_measured_on="device" if run else "host",
        stack_reserved_bytes=STACK_SIZE,
        project=name,
        elf=f"{name}/{ELF}",
        elf_sha256=sha256_file(built.elf),
        library_files=library.files,
        library_cached=not library.built_now,
        library_seconds=round(library.seconds, 1),
        build_seconds=round(build_seconds, 1),
        qemu_command=tuple(qemu_command(board, Path(ELF))),
        ran=device is not None,
        **figures,
    ), device


# ----------------------------------------------------------------------------- the stage


def _earlier_projects(out: Path) -> list[str]:
    """The project folders an earlier firmware.json in `out` lists."""
    try:
        record = load_record(out.parent, "firmware", out / FIRMWARE_JSON)
    except MnistEdgeError:
        return []  # unreadable: its folders are left alone, as if there were none
    return [result.project for result in record.results] if record else []


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


def _project_inputs(
    device: DeviceModel, images: np.ndarray, labels: np.ndarray, tree: SourceTree
) -> ProjectInputs:
    """What every configuration's project is generated from: the model, the images as the
    model's int8 inputs, and host TFLM's outputs for them (the golden vectors)."""
    inputs_int8, golden, spec = _golden(device.path, images)
    return ProjectInputs(
        model_name=device.name,
        model=device.data,
        model_sha256=device.sha256,
        info=device.info,
        inputs=inputs_int8,
        indices=np.arange(len(images)),
        labels=labels.astype(np.uint8),
        golden=golden.astype(np.int8),
        input_scale=float(spec.scale),
        input_zero_point=int(spec.zero_point),
        sources_root=str(tree.root),
    )


def _built_and_described(
    config: _Config, staging: Path, run: bool, timeout_s: float, host_arena: int | None
) -> FirmwareResult:
    """One configuration built (and run), its README written beside it, its figures logged."""
    result, device = _configuration(config, staging, run, timeout_s, host_arena)
    (staging / result.project / "README.md").write_bytes(
        firmware_readme(config.inputs, config.board, config.kernels, result, device, config.tree)
    )
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


def _copy_licenses(tree: SourceTree, folder: Path) -> None:
    """The pinned sources' licenses, which travel with the firmware built from them."""
    folder.mkdir()
    for repo, path in tree.licenses().items():
        shutil.copyfile(path, folder / f"{repo.replace('/', '_')}.txt")


def _skipped(out: Path, model: Path, data: bytes, images: int, reason: str) -> FirmwareReport:
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
    )
    prepare_output_dir(out)
    write_files_atomic({out / FIRMWARE_JSON: json_bytes(record_payload(report))})
    return report


def firmware(
    model: Path,
    images: np.ndarray,
    labels: np.ndarray,
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
) -> FirmwareReport:
    """Build, run and measure the model's firmware for every CPU × kernels; write `out`.

    `images` are MNIST test images (uint8 N×28×28, test-set indices 0..N-1) and `labels` theirs.
    Raises CheckFailed, writing nothing, when a configuration exceeds max_flash or max_ram. An
    output that differs from host TFLM's is written down, not raised: the report is then false
    and its `failures` say where (the CLI exits 1 on it, as for verify). With
    `skip_missing_tools`, a missing toolchain or QEMU is not an error: the record written says
    the firmware was skipped, and why (make demo on a machine without them).
    """
    boards = _check_options(cpus, kernels, images, labels, max_flash, max_ram, timeout_s)
    kernels = list(dict.fromkeys(kernels))
    model = Path(model)
    device = _check_model(model)
    out = Path(out)
    names = [f"{board.cpu}-{k}" for board in boards for k in kernels]
    refuse_overwrite([out / FIRMWARE_JSON, *(out / name for name in names)], overwrite)
    try:
        toolchain = find_toolchain()
        qemu_version = find_qemu()[1] if run else None
    except MissingDependencyError as exc:
        if not skip_missing_tools:
            raise
        return _skipped(out, model, device.data, len(images), str(exc))
    prepare_output_dir(out)
    tree = prepare_sources(sources)
    inputs = _project_inputs(device, np.asarray(images), np.asarray(labels), tree)
    host_arena = None
    if not run:
        from mnist_edge.arena import measure_arena

        host_arena = measure_arena(device.data, str(model), device.info).bytes
    staging = Path(tempfile.mkdtemp(prefix=".firmware-staging-", dir=out))
    try:
        results = [
            _built_and_described(
                _Config(inputs, board, kernel_set, tree, toolchain),
                staging,
                run,
                timeout_s,
                host_arena,
            )
            for board in boards
            for kernel_set in kernels
        ]
        _check_budgets(results, max_flash, max_ram)
        _copy_licenses(tree, staging / LICENSES_DIR)
        report = FirmwareReport(
            out=str(out),
            model=model.name,
            model_sha256=inputs.model_sha256,
            images=len(images),
            results=tuple(results),
            toolchain=toolchain.version,
            qemu=qemu_version,
            sources=tree.describe(),
            mnist_edge=__version__,
        )
        _publish(staging, out, [*names, LICENSES_DIR], _earlier_projects(out))
        write_files_atomic({out / FIRMWARE_JSON: json_bytes(record_payload(report))})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report

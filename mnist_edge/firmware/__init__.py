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
from mnist_edge.errors import CheckFailed, MissingDependencyError, MnistEdgeError, ModelError
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
    KERNELS_DESCRIPTION,
    LIBRARY_KERNELS,
    STACK_SIZE,
    ProjectInputs,
    main_cc,
    project_files,
    render,
    resolver_calls,
    unsupported_ops,
)
from mnist_edge.firmware.qemu import QemuRun, find_qemu, qemu_command, run_firmware
from mnist_edge.firmware.sources import SOURCES, SourceTree, prepare_sources
from mnist_edge.model_info import ModelInfo, count_macs, model_kind, read_model, tflm_refusal
from mnist_edge.records import FirmwareReport, FirmwareResult, FlashSplit
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


def _check_model(model: Path) -> tuple[bytes, ModelInfo]:
    """The model's bytes and parsed flatbuffer; ModelError for anything the firmware cannot run."""
    model = Path(model)
    if not model.is_file():
        raise ModelError(f"{model}: no such model file; run `mnist-edge export --int8`.")
    if model.suffix != ".tflite":
        raise ModelError(f"{model}: expected a .tflite model (TFLM runs TFLite flatbuffers).")
    data = model.read_bytes()
    info = read_model(data, str(model))
    kind = model_kind(info)
    refusal = tflm_refusal(info, kind)
    if refusal:
        raise ModelError(
            f"{model}: {refusal}, so it cannot run on a microcontroller; build the full-integer "
            "model instead (mnist-edge export --int8 writes model_int8.tflite)."
        )
    if kind != "int8":
        raise ModelError(
            f"{model}: a {kind} model; the firmware runs full-integer int8 models "
            "(mnist-edge export --int8 writes model_int8.tflite)."
        )
    tensor_in, tensor_out = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    if tensor_in.shape[1:] != (*IMAGE_SHAPE, 1) or tensor_out.shape[1:] != (NUM_CLASSES,):
        raise ModelError(
            f"{model}: input {tensor_in.shape}, output {tensor_out.shape}; expected "
            f"(N, 28, 28, 1) and (N, {NUM_CLASSES})."
        )
    missing = unsupported_ops(info)
    if missing:
        raise ModelError(
            f"{model}: uses {', '.join(missing)}, which the firmware's TFLM library does not "
            f"compile (it has {', '.join(LIBRARY_KERNELS)})."
        )
    return data, info


def _check_budgets(results: list[FirmwareResult], max_flash: int | None, max_ram: int | None):
    over = []
    for r in results:
        name = f"{r.cpu} {r.kernels}"
        if max_flash is not None and r.flash_bytes > max_flash:
            over.append(
                f"{name} needs {r.flash_bytes:,} bytes of flash, "
                f"{r.flash_bytes - max_flash:,} over {max_flash:,}"
            )
        if max_ram is not None and r.ram_bytes > max_ram:
            over.append(
                f"{name} needs {r.ram_bytes:,} bytes of RAM ({r.static_bytes:,} static + "
                f"{r.stack_bytes:,} stack), {r.ram_bytes - max_ram:,} over {max_ram:,}"
            )
    if over:
        raise CheckFailed("Does not fit: " + "; ".join(over) + ".")


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


def _measured_lines(result: FirmwareResult, run: QemuRun | None) -> str:
    if run is None:
        return "Built, not run (run=False)."
    f = result.flash
    return "\n".join(
        [
            "| figure | value |",
            "| --- | --- |",
            f"| golden outputs identical to host TFLM | {result.golden_identical}/"
            f"{result.golden_count} |",
            f"| correct | {result.correct}/{result.images} |",
            f"| instructions per inference | {result.instructions_per_inference:,} median "
            f"(min {result.instructions_min:,}, max {result.instructions_max:,}); "
            f"{result.instructions_per_mac:.2f} per MAC for {result.macs:,} MACs |",
            f"| flash | {result.flash_bytes:,} bytes: model {f.model:,}, images {f.images:,}, "
            f"TFLM runtime {f.tflm_runtime:,}, kernels {f.kernels:,}, CMSIS-NN {f.cmsis_nn:,}, "
            f"libc {f.libc:,}, app {f.app:,} |",
            f"| RAM | {result.ram_bytes:,} bytes: static {result.static_bytes:,} (arena "
            f"{result.arena_bytes:,}) + stack peak {result.stack_bytes:,} |",
        ]
    )


def _source_table() -> str:
    rows = ["| repository | commit | tree hash (SHA-256 of its files) |", "| --- | --- | --- |"]
    rows += [f"| {s.repo} | `{s.commit}` | `{s.tree_hash[:16]}…` |" for s in SOURCES]
    return "\n".join(rows)


def _readme(
    inputs: ProjectInputs,
    board: Board,
    kernels: str,
    result: FirmwareResult,
    run: QemuRun | None,
    tree: SourceTree,
) -> bytes:
    values = {
        "version": __version__,
        "model_name": inputs.model_name,
        "model_sha256": inputs.model_sha256,
        "cpu": board.cpu,
        "machine": board.machine,
        "board_description": board.description,
        "kernels_description": KERNELS_DESCRIPTION[kernels],
        "image_count": len(inputs.inputs),
        "measured": _measured_lines(result, run),
        "mve": " and MVE" if board.macs_per_instruction > 2 else "",
        "code_name": board.code.name,
        "code_origin": f"0x{board.code.origin:08X}",
        "code_length": f"{board.code.length:,}",
        "data_name": board.data.name,
        "data_origin": f"0x{board.data.origin:08X}",
        "data_length": f"{board.data.length:,}",
        "stack_size": f"{STACK_SIZE:,}",
        "op_count": len(resolver_calls(inputs.info, kernels)),
        "library_files": result.library_files,
        "sources": tree.root,
        "qemu_args": " ".join(board.qemu_args),
        "source_table": _source_table(),
        "instructions_per_tick": f"{board.instructions_per_tick:g}",
    }
    return render("README.md", values).encode()


def _configuration(
    inputs: ProjectInputs,
    board: Board,
    kernels: str,
    staging: Path,
    tree: SourceTree,
    toolchain: Toolchain,
    run: bool,
    timeout_s: float,
    host_arena: int | None,
) -> tuple[FirmwareResult, QemuRun | None]:
    label = f"{board.cpu} {kernels}"
    name = f"{board.cpu}-{kernels}"
    project = staging / name
    project.mkdir()
    # First with the largest arena the board's RAM allows, running one image: TFLM then says
    # how much arena this CPU and these kernels use; the firmware shipped gets exactly that.
    # Not running, the host's measure stands in (64-bit: a little more than a 32-bit MCU needs).
    sizing_arena = _round_up(board.data.length // 2, 1024) if run else host_arena
    files = project_files(inputs, board, kernels, sizing_arena)
    for file_name, content in files.items():
        (project / file_name).write_bytes(content)
    library_mk = files["tflm.mk"].decode()
    library = build_library(
        project,
        library_key(library_mk, toolchain, tree),
        f"TFLM for {label}",
        tree,
        toolchain,
    )
    started = time.perf_counter()
    arena = sizing_arena
    if run:
        sizing = _link(
            project,
            board,
            library,
            tree,
            toolchain,
            label,
            build="build-sizing",
            elf="sizing.elf",
            defines="-DIMAGES_TO_RUN=1",
        )
        probe = _run(board, sizing.elf, timeout_s, label)
        arena = _round_up(probe.uart.summary.arena_used_bytes, ARENA_ALIGNMENT)
        (project / "main.cc").write_bytes(main_cc(inputs, board, kernels, arena).encode())
    built = _link(project, board, library, tree, toolchain, label)
    build_seconds = time.perf_counter() - started
    sizes = measure(built.elf, built.map_file)
    device = _run(board, built.elf, timeout_s, label) if run else None
    for leftover in ("build", "build-sizing", "sizing.elf", "sizing.map"):
        path = project / leftover
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    macs = count_macs(inputs.info)
    isa_limit = -(-macs // board.macs_per_instruction)
    if device is not None:
        summary = device.uart.summary
        records = device.uart.images
        expected = {
            int(i): tuple(int(v) for v in g)
            for i, g in zip(inputs.indices, inputs.golden, strict=True)
        }
        host_class = {i: int(np.argmax(v)) for i, v in expected.items()}
        mismatches = tuple(r.index for r in records if expected.get(r.index) != r.outputs)
        same_class = sum(int(np.argmax(r.outputs)) == host_class.get(r.index) for r in records)
        counts = [r.instructions for r in records]
        median = int(statistics.median(counts)) if counts else None
        stack = summary.stack_peak_bytes
        golden = (summary.count, summary.identical)
        correct = summary.correct
        run_seconds = device.seconds
    else:
        mismatches, same_class, counts, median, stack = (), 0, [], None, STACK_SIZE
        golden, correct, run_seconds = (0, 0), 0, None
    images = len(inputs.inputs)
    ran = device is not None
    return FirmwareResult(
        cpu=board.cpu,
        board=board.machine,
        kernels=kernels,
        model=inputs.model_name,
        model_sha256=inputs.model_sha256,
        images=images,
        golden_count=golden[0],
        golden_identical=golden[1],
        correct=correct,
        accuracy=round(correct / images, 6) if ran else None,
        agreement_with_host_tflm=round(same_class / images, 6) if ran else None,
        mismatches=mismatches,
        instructions_per_inference=median,
        instructions_min=min(counts) if counts else None,
        instructions_max=max(counts) if counts else None,
        macs=macs,
        instructions_per_mac=round(median / macs, 4) if median and macs else None,
        isa_limit_instructions=isa_limit,
        flash_bytes=sizes.flash_bytes,
        flash=FlashSplit(**{c: sizes.flash[c] for c in FLASH_COMPONENTS}),
        ram_bytes=sizes.static_bytes + stack,
        static_bytes=sizes.static_bytes,
        arena_bytes=arena,
        arena_measured_on="device" if run else "host",
        stack_bytes=stack,
        stack_reserved_bytes=STACK_SIZE,
        project=name,
        elf=f"{name}/{ELF}",
        elf_sha256=sha256_file(built.elf),
        library_files=library.files,
        library_cached=not library.built_now,
        library_seconds=round(library.seconds, 1),
        build_seconds=round(build_seconds, 1),
        run_seconds=round(run_seconds, 1) if run_seconds is not None else None,
        exit_status=device.returncode if device is not None else None,
        qemu_command=tuple(qemu_command(board, Path(ELF))),
        ran=ran,
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
    data, info = _check_model(model)
    out = Path(out)
    names = [f"{board.cpu}-{k}" for board in boards for k in kernels]
    refuse_overwrite([out / FIRMWARE_JSON, *(out / name for name in names)], overwrite)
    try:
        toolchain = find_toolchain()
        qemu_version = find_qemu()[1] if run else None
    except MissingDependencyError as exc:
        if not skip_missing_tools:
            raise
        return _skipped(out, model, data, len(images), str(exc))
    prepare_output_dir(out)
    tree = prepare_sources(sources)

    images = np.asarray(images)
    inputs_int8, golden, spec = _golden(model, images)
    inputs = ProjectInputs(
        model_name=model.name,
        model=data,
        model_sha256=sha256_bytes(data),
        info=info,
        inputs=inputs_int8,
        indices=np.arange(len(images)),
        labels=np.asarray(labels).astype(np.uint8),
        golden=golden.astype(np.int8),
        input_scale=float(spec.scale),
        input_zero_point=int(spec.zero_point),
        sources_root=str(tree.root),
    )
    host_arena = None
    if not run:
        from mnist_edge.arena import measure_arena

        host_arena = measure_arena(data, str(model)).bytes
    staging = Path(tempfile.mkdtemp(prefix=".firmware-staging-", dir=out))
    try:
        results = []
        for board in boards:
            for kernel_set in kernels:
                result, device = _configuration(
                    inputs, board, kernel_set, staging, tree, toolchain, run, timeout_s, host_arena
                )
                (staging / result.project / "README.md").write_bytes(
                    _readme(inputs, board, kernel_set, result, device, tree)
                )
                log.info(
                    "%s %s: golden %d/%d, %s instructions per inference, flash %s, RAM %s",
                    board.cpu,
                    kernel_set,
                    result.golden_identical,
                    result.golden_count,
                    f"{result.instructions_per_inference:,}" if result.ran else "-",
                    f"{result.flash_bytes:,}",
                    f"{result.ram_bytes:,}",
                )
                results.append(result)
        _check_budgets(results, max_flash, max_ram)
        licenses = staging / LICENSES_DIR
        licenses.mkdir()
        for repo, path in tree.licenses().items():
            shutil.copyfile(path, licenses / f"{repo.replace('/', '_')}.txt")
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

"""What a firmware run found, per CPU × kernels: the frozen records behind firmware.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from mnist_edge import __version__

FIRMWARE_FORMAT = "mnist-edge-firmware/1"


@dataclass(frozen=True)
class FlashSplit:
    """Flash bytes by what they are; the fields add up to the ELF's flash bytes exactly."""

    model: int
    images: int  # the images, their labels and golden outputs
    tflm_runtime: int  # interpreter, allocator, flatbuffer parsing
    kernels: int  # TFLM's kernels and their shared helpers
    cmsis_nn: int
    libc: int  # newlib-nano, libm, semihosting, libgcc
    app: int  # main, startup, board

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


@dataclass(frozen=True)
class FirmwareResult:
    """One CPU × kernels configuration: built, run, checked, measured."""

    cpu: str
    board: str  # the QEMU machine
    kernels: str
    model: str
    model_sha256: str
    images: int
    golden_count: int  # images the firmware compared with host TFLM's outputs
    golden_identical: int  # ... and found equal, bit for bit
    correct: int
    accuracy: float | None
    agreement_with_host_tflm: float | None  # share of images with host TFLM's class
    mismatches: tuple[int, ...]  # test indices whose outputs differ from host TFLM's
    instructions_per_inference: int | None  # median over the images
    instructions_min: int | None
    instructions_max: int | None
    macs: int
    instructions_per_mac: float | None
    isa_limit_instructions: int  # MACs / the ISA's widest int8 MAC (2 SMLAD, 16 MVE)
    flash_bytes: int
    flash: FlashSplit
    ram_bytes: int  # static + stack peak (the reserved stack when not run)
    static_bytes: int  # .data + .bss, the tensor arena included
    arena_bytes: int  # the tensor arena, sized to what TFLM used on this CPU
    arena_measured_on: str  # "device"; "host" (64-bit TFLM, an upper bound) when not run
    stack_bytes: int  # peak, measured by painting (the reservation when not run)
    stack_reserved_bytes: int
    project: str  # folder, relative to the output folder
    elf: str
    elf_sha256: str
    library_files: int
    library_cached: bool
    library_seconds: float  # compile time of the library (earlier, when cached)
    build_seconds: float  # this configuration's app build and links, now
    run_seconds: float | None
    exit_status: int | None  # QEMU's, the firmware's exit(): 0 when every output matched
    qemu_command: tuple[str, ...]
    ran: bool

    @property
    def passed(self) -> bool:
        """Ran, and every output matched host TFLM bit for bit (the firmware's own check, exit
        status 0, and ours on the printed outputs)."""
        return (
            self.ran
            and self.exit_status == 0
            and self.golden_count == self.images
            and self.golden_identical == self.golden_count
            and not self.mismatches
        )

    def to_json(self) -> dict:
        payload = asdict(self)
        payload["golden"] = {
            "count": payload.pop("golden_count"),
            "identical": payload.pop("golden_identical"),
        }
        payload["mismatches"] = list(self.mismatches)
        payload["qemu_command"] = " ".join(self.qemu_command)
        return payload


@dataclass(frozen=True)
class FirmwareReport:
    """Every configuration's result, and what built and ran them."""

    out: Path
    model: str
    model_sha256: str
    images: int
    results: tuple[FirmwareResult, ...]
    toolchain: str
    qemu: str | None
    sources: dict[str, dict[str, str]]

    @property
    def passed(self) -> bool:
        """Every configuration ran and matched host TFLM bit for bit."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> list[str]:
        """One phrase per configuration that did not match host TFLM (or did not run)."""
        return [
            f"{r.cpu} {r.kernels}: {r.golden_identical}/{r.golden_count} outputs identical to "
            f"host TFLM (first mismatch: test image {r.mismatches[0]})"
            if r.mismatches
            else f"{r.cpu} {r.kernels}: {'not run' if not r.ran else 'no outputs compared'}"
            for r in self.results
            if not r.passed
        ]

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return {
            "format": FIRMWARE_FORMAT,
            "mnist_edge": __version__,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "images": self.images,
            "results": [result.to_json() for result in self.results],
            "toolchain": self.toolchain,
            "qemu": self.qemu,
            "sources": self.sources,
        }


def load_firmware_record(path: Path) -> FirmwareReport | None:
    """firmware.json read back as the records that wrote it; None when absent. A record this
    version cannot read is refused in one line (as every record is, artifacts.load_record)."""
    import json
    from dataclasses import fields

    from mnist_edge.errors import MnistEdgeError

    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        results = []
        for row in payload["results"]:
            row = dict(row)
            golden = row.pop("golden")
            row["golden_count"], row["golden_identical"] = golden["count"], golden["identical"]
            row["flash"] = FlashSplit(**row["flash"])
            row["mismatches"] = tuple(row["mismatches"])
            row["qemu_command"] = tuple(str(row["qemu_command"]).split())
            known = {f.name for f in fields(FirmwareResult)}
            results.append(FirmwareResult(**{k: v for k, v in row.items() if k in known}))
        return FirmwareReport(
            out=path.parent,
            model=payload["model"],
            model_sha256=payload["model_sha256"],
            images=payload["images"],
            results=tuple(results),
            toolchain=payload["toolchain"],
            qemu=payload.get("qemu"),
            sources=payload.get("sources", {}),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MnistEdgeError(
            f"{path}: not a firmware record this version reads ({exc}); run `mnist-edge "
            "firmware` again."
        ) from None


def on_target(firmware_json: Path, model_sha256: str) -> list[dict]:
    """What a firmware run of the model with these bytes measured on each CPU × kernels: the
    rows bundle's manifest and bench --target mcu show. [] when there is no run of these bytes
    (or its record cannot be read: it is context, not a reason to fail the caller)."""
    import logging

    from mnist_edge.errors import MnistEdgeError

    try:
        record = load_firmware_record(firmware_json)
    except MnistEdgeError as exc:
        logging.getLogger(__name__).info("Not using the firmware record: %s", exc)
        return []
    if record is None or record.model_sha256 != model_sha256:
        return []
    source = f"{Path(firmware_json).parent.name}/{Path(firmware_json).name}"
    return [
        {
            "cpu": r.cpu,
            "kernels": r.kernels,
            "board": r.board,
            "arena_bytes": r.arena_bytes,
            "arena_measured_on": r.arena_measured_on,
            "flash_bytes": r.flash_bytes,
            "ram_bytes": r.ram_bytes,
            "stack_bytes": r.stack_bytes,
            "instructions_per_inference": r.instructions_per_inference,
            "golden": f"{r.golden_identical}/{r.golden_count}",
            "source": source,
        }
        for r in record.results
    ]

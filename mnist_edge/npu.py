"""An int8 .tflite compiled for an Arm Ethos-U NPU by Arm's vela, and what vela estimates for it.

vela runs as a child process (`python -m ethosu.vela`, the interpreter running this) into a
temporary folder; its per-run summary CSV gives every figure, and the compiled model itself
says which operators stayed on the CPU (every operator but the `ethos-u` custom one). vela's
Python surface is its command line (`ethosu.vela.api` is the driver's register API, not the
compiler's), and a child keeps its prints and its C++ core (regor) out of this process. No NPU
or emulator of one is reachable here, so every figure is an estimate and says so.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.files import sha256_bytes
from mnist_edge.model_info import read_model, read_tflite
from mnist_edge.options import NPU_BASIS, NPU_CONFIG_FILE, NPU_TARGETS
from mnist_edge.processes import stream
from mnist_edge.records import NpuEstimate

VELA_DISTRIBUTION = "ethos-u-vela"
NPU_OPERATOR = "CUSTOM:ethos-u"  # what vela replaces the operators it maps with
KIB = 1024


@dataclass(frozen=True)
class NpuCompilation:
    """vela's compiled model (bytes to ship beside the NPU driver) and its estimate."""

    estimate: NpuEstimate
    model: bytes  # the compiled .tflite: `compiled_sha256` in the estimate is of these bytes

    @property
    def file_name(self) -> str:
        """The compiled model's file name, as vela names it: <model>_vela.tflite."""
        return f"{Path(self.estimate.artifact).stem}_vela.tflite"


def vela_version() -> str:
    """The installed vela's version; MissingDependencyError naming the [npu] extra if absent."""
    from importlib import metadata

    try:
        return metadata.version(VELA_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"Arm's vela compiler ({VELA_DISTRIBUTION}) is not installed: NPU estimates need "
            "the [npu] extra. Install it with: pip install 'mnist-edge[npu]' "
            "(from a clone: pip install -e '.[npu]')"
        ) from None


def compile_for_npu(model: Path, accelerator: str) -> NpuCompilation:
    """Compile an int8 .tflite with vela for one Ethos-U configuration (options.NPU_TARGETS).

    Operators vela cannot map stay on the CPU and are listed, not refused; a model vela rejects
    outright raises ModelError with vela's last line.
    """
    if accelerator not in NPU_TARGETS:
        raise MnistEdgeError(
            f"Invalid accelerator {accelerator!r}: expected one of {', '.join(NPU_TARGETS)}."
        )
    model = Path(model)
    if model.suffix != ".tflite":
        raise ModelError(f"{model}: vela compiles .tflite models only (got {model.suffix!r}).")
    version = vela_version()
    data, info = read_tflite(model)  # a file that is not a flatbuffer is refused here, by name
    system_config, memory_mode = NPU_TARGETS[accelerator]
    with tempfile.TemporaryDirectory(prefix="mnist-edge-vela-") as tmp:
        out = Path(tmp)
        status, lines = stream(
            [
                sys.executable,
                "-m",
                "ethosu.vela",
                str(model),
                f"--accelerator-config={accelerator}",
                f"--config={NPU_CONFIG_FILE}",
                f"--system-config={system_config}",
                f"--memory-mode={memory_mode}",
                f"--output-dir={out}",
            ]
        )
        compiled = out / f"{model.stem}_vela.tflite"
        summaries = sorted(out.glob(f"{model.stem}_summary_*.csv"))
        if status != 0 or not compiled.is_file() or not summaries:
            said = [line.strip() for line in lines if line.strip()]
            reason = said[-1] if said else f"exit status {status}, no output"
            raise ModelError(f"{model}: vela {version} rejected it for {accelerator} ({reason}).")
        compiled_data = compiled.read_bytes()
        with summaries[0].open(newline="") as handle:
            summary = next(csv.DictReader(handle), None)
    if summary is None:
        raise ModelError(f"{model}: vela {version} wrote an empty summary for {accelerator}.")
    cpu_operators = [
        op.op
        for op in read_model(compiled_data, f"{model.stem}_vela.tflite").operators
        if op.op != NPU_OPERATOR
    ]
    return NpuCompilation(
        estimate=_estimate(
            summary,
            artifact=model.name,
            model_sha256=sha256_bytes(data),
            accelerator=accelerator,
            model_operators=len(info.operators),
            cpu_operators=cpu_operators,
            compiled=compiled_data,
            version=version,
        ),
        model=compiled_data,
    )


def estimate_npu(model: Path, accelerator: str) -> NpuEstimate:
    """vela's estimate for one model on one Ethos-U configuration (the compiled bytes dropped)."""
    return compile_for_npu(model, accelerator).estimate


def _estimate(
    summary: dict[str, str],
    *,
    artifact: str,
    model_sha256: str,
    accelerator: str,
    model_operators: int,
    cpu_operators: list[str],
    compiled: bytes,
    version: str,
) -> NpuEstimate:
    def number(key: str) -> float:
        try:
            return float(summary[key])
        except (KeyError, ValueError):
            raise ModelError(
                f"vela {version}'s summary has no number {key!r} (got "
                f"{summary.get(key)!r}): expected the CSV of ethos-u-vela 5.x."
            ) from None

    def kib(key: str) -> int:  # vela writes memory use in KiB, to the byte
        return round(number(key) * KIB)

    clock_hz = int(number("core_clock"))
    cycles_total = int(number("cycles_total"))
    return NpuEstimate(
        artifact=artifact,
        model_sha256=model_sha256,
        accelerator=accelerator,
        system_config=summary.get("system_config", ""),
        memory_mode=summary.get("memory_mode", ""),
        clock_hz=clock_hz,
        cycles_total=cycles_total,
        cycles_npu=int(number("cycles_npu")),
        inference_us=round(cycles_total / clock_hz * 1e6, 3) if clock_hz else 0.0,
        sram_bytes=kib("sram_memory_used"),
        off_chip_flash_bytes=kib("off_chip_flash_memory_used"),
        dram_bytes=kib("dram_memory_used"),
        weights_area=summary.get("weights_storage_area", ""),
        model_operators=model_operators,
        npu_operators=model_operators - len(cpu_operators),
        cpu_operators=cpu_operators,
        # vela's passes are its NPU operations (after lowering) plus the CPU's operators.
        vela_npu_operations=max(0, int(number("passes_before_fusing")) - len(cpu_operators)),
        macs=int(number("nn_macs")),
        compiled_bytes=len(compiled),
        compiled_sha256=sha256_bytes(compiled),
        vela_version=version,
        basis=NPU_BASIS,
    )

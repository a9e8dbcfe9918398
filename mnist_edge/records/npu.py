"""Arm's vela compiler's estimates for an Ethos-U NPU (no NPU ran)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NpuEstimate:
    """What Arm's vela compiler estimates for one model on one Ethos-U configuration.

    No NPU ran: every figure is vela's performance model (`basis` says so). Cycles cover the NPU's
    work only: operators left on the CPU (`cpu_operators`) are not in them.
    """

    artifact: str
    model_sha256: str
    accelerator: str  # vela's --accelerator-config, e.g. ethos-u55-128
    system_config: str  # from vela's config file, e.g. Ethos_U55_High_End_Embedded
    memory_mode: str  # e.g. Shared_Sram
    clock_hz: int  # the system config's NPU clock
    cycles_total: int
    cycles_npu: int  # the compute alone; the rest of cycles_total waits on memory
    inference_us: float  # cycles_total at clock_hz
    sram_bytes: int
    off_chip_flash_bytes: int
    dram_bytes: int
    weights_area: str  # where the system config keeps the weights: "Off-chip Flash", "DRAM"
    model_operators: int  # the model's operators ...
    npu_operators: int  # ... those vela moved into the NPU's custom operator ...
    cpu_operators: list[str]  # ... and those it left to the CPU, in execution order
    vela_npu_operations: int  # vela's own count, after it lowers operators (a softmax is many)
    macs: int  # as vela counts them
    compiled_bytes: int  # the compiled .tflite (an ethos-u custom operator)
    compiled_sha256: str
    vela_version: str
    basis: str = "estimate (vela)"

    @property
    def fully_mapped(self) -> bool:
        """Every operator of the model runs on the NPU."""
        return not self.cpu_operators

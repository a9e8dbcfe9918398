"""The boards firmware is built for: one row per CPU, everything the build and QEMU need to know.

A new board is a new row. The memory maps are QEMU 7.2's (docs/system/arm/mps2.rst and the
boards' application notes AN386, AN500, AN547); "code" is what a real part would keep in flash,
"data" what it would keep in RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnist_edge.errors import MnistEdgeError


@dataclass(frozen=True)
class Region:
    """A memory region of the board: what it is, where it starts, how many bytes it holds."""

    name: str
    origin: int
    length: int


@dataclass(frozen=True)
class Board:
    """A QEMU machine with one Cortex-M CPU, and how to build and measure code for it."""

    cpu: str  # the name users pass: cortex-m4
    machine: str  # qemu-system-arm -M
    device: str  # Cortex_DFP device folder and header (Device/ARMCM4/Include/ARMCM4.h)
    cpu_flags: tuple[str, ...]
    code: Region
    data: Region
    # With -icount shift=0 virtual time advances 1 ns per instruction, so SysTick on the CPU
    # clock ticks once per (1e9 / clock Hz) instructions. The firmware calibrates this itself;
    # the expected ratio is here to check that QEMU really counted instructions.
    instructions_per_tick: float
    # The widest int8 multiply-accumulate the ISA has: SMLAD does 2 per instruction (DSP
    # extension), MVE's VMLAVA.S8 16 (a 128-bit vector of int8).
    macs_per_instruction: int
    description: str

    @property
    def qemu_args(self) -> tuple[str, ...]:
        """qemu-system-arm's arguments before `-kernel ELF`."""
        return (
            "-M",
            self.machine,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-icount",
            "shift=0",
        )


MiB = 1024 * 1024
KiB = 1024

BOARDS: dict[str, Board] = {
    board.cpu: board
    for board in (
        Board(
            cpu="cortex-m4",
            machine="mps2-an386",
            device="ARMCM4",
            cpu_flags=("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"),
            code=Region("SSRAM1", 0x00000000, 4 * MiB),  # vector table at 0
            data=Region("SSRAM2/3", 0x20000000, 4 * MiB),
            instructions_per_tick=40.0,  # 25 MHz
            macs_per_instruction=2,
            description="Arm MPS2 with AN386 (Cortex-M4, FPU, DSP)",
        ),
        Board(
            cpu="cortex-m7",
            machine="mps2-an500",
            device="ARMCM7",
            cpu_flags=("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"),
            code=Region("SSRAM1", 0x00000000, 4 * MiB),
            data=Region("SSRAM2/3", 0x20000000, 4 * MiB),
            instructions_per_tick=40.0,  # 25 MHz
            macs_per_instruction=2,
            description="Arm MPS2 with AN500 (Cortex-M7, double-precision FPU, DSP)",
        ),
        Board(
            cpu="cortex-m55",
            machine="mps3-an547",
            device="ARMCM55",
            cpu_flags=("-mcpu=cortex-m55", "-mfpu=auto", "-mfloat-abi=hard", "-mthumb"),
            code=Region("ITCM", 0x00000000, 512 * KiB),  # boots Secure, vector table at 0
            data=Region("DTCM", 0x20000000, 512 * KiB),  # a 4 MB SRAM follows at 0x21000000
            instructions_per_tick=31.25,  # 32 MHz
            macs_per_instruction=16,
            description="Arm MPS3 with AN547 (Cortex-M55, Helium/MVE, FPU)",
        ),
    )
}

KERNELS = ("reference", "cmsis-nn")


def board_for(cpu: str) -> Board:
    """The board row for a CPU name; a one-line error listing the known ones otherwise."""
    try:
        return BOARDS[cpu]
    except KeyError:
        raise MnistEdgeError(f"Unknown CPU {cpu!r}: expected one of {', '.join(BOARDS)}.") from None

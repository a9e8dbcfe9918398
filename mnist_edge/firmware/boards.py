"""The boards firmware is built for: one row per CPU, everything the build and QEMU need to know.

A new board is a new row. The memory maps are QEMU 7.2's (docs/system/arm/mps2.rst and the
boards' application notes AN386, AN500, AN505, AN547; hw/arm/microbit.c, nrf51_soc.c,
stm32f100_soc.c; hw/riscv/sifive_e.c); "code" is what a real part would keep in flash, "data"
what it would keep in RAM. The small boards (micro:bit, STM32VLDISCOVERY, HiFive1) have the real
part's flash and RAM: QEMU maps nothing past them, so firmware that runs there fits the part.
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


# What differs between the architectures: the cross compiler's prefix, the make variable that
# carries it, the QEMU program, and the counter that measures instructions.
ARCHES = {
    "arm": ("arm-none-eabi-", "GCC_PREFIX", "qemu-system-arm", "SysTick"),
    "riscv": ("riscv64-unknown-elf-", "GCC_PREFIX", "qemu-system-riscv32", "minstret"),
}


@dataclass(frozen=True)
class Board:
    """A QEMU machine with one microcontroller CPU, and how to build and measure code for it."""

    cpu: str  # the name users pass: cortex-m4, rv32imc
    machine: str  # qemu-system-arm (or qemu-system-riscv32) -M
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
    fpu: bool = True  # startup enables CP10/CP11 only where there is one (CPACR faults on M0/M3)
    dsp: bool = True  # the DSP extension: CMSIS-NN's SMLAD path (ARM_MATH_DSP) instead of plain C
    # Whether TFLM's firmware is built and tested for it; the C engine (cengine.py) runs on all.
    tflm: bool = True
    # The C engine's stack reservation: its peak is under 1.2 KB (painted, 10,000 images on M4)
    c_stack_size: int = 2048
    arch: str = "arm"  # a key of ARCHES: the toolchain, QEMU and the C engine's board files

    @property
    def isa(self) -> str:
        """The CMSIS-NN build the board compiles (codegen.cmsis.ISAS): its kernels, and the
        scratch they ask for, differ between plain C, the DSP extension and Helium."""
        if self.macs_per_instruction >= 16:
            return "mve"
        return "dsp" if self.dsp else "plain"

    @property
    def gcc_prefix(self) -> str:
        """The cross compiler's prefix: arm-none-eabi-, riscv64-unknown-elf-."""
        return ARCHES[self.arch][0]

    @property
    def qemu(self) -> str:
        """The QEMU program that emulates the board."""
        return ARCHES[self.arch][2]

    @property
    def counter(self) -> str:
        """What the firmware counts instructions with (SysTick's ticks, minstret)."""
        return ARCHES[self.arch][3]

    @property
    def qemu_args(self) -> tuple[str, ...]:
        """The QEMU program's arguments before `-kernel ELF`."""
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
        Board(
            cpu="cortex-m0",
            machine="microbit",
            device="ARMCM0",
            cpu_flags=("-mcpu=cortex-m0", "-mfloat-abi=soft", "-mthumb"),
            code=Region("flash", 0x00000000, 256 * KiB),
            data=Region("RAM", 0x20000000, 16 * KiB),
            instructions_per_tick=62.5,  # 16 MHz: 9,600 ticks for 600 K instructions
            macs_per_instruction=1,  # MULS then ADDS: one MAC takes two instructions
            description="BBC micro:bit (nRF51822: Cortex-M0, ARMv6-M, no DSP, no FPU)",
            fpu=False,
            dsp=False,
            tflm=False,  # 16 KB of RAM: TFLM's firmware needs 33 KB
        ),
        Board(
            cpu="cortex-m3",
            machine="stm32vldiscovery",
            device="ARMCM3",
            cpu_flags=("-mcpu=cortex-m3", "-mfloat-abi=soft", "-mthumb"),
            code=Region("flash", 0x08000000, 128 * KiB),  # aliased at 0, where the core boots
            data=Region("SRAM", 0x20000000, 8 * KiB),
            instructions_per_tick=1000 / 24,  # 24 MHz: 14,400 ticks for 600 K instructions
            macs_per_instruction=1,  # MLA, no SIMD
            description="STM32VLDISCOVERY (STM32F100RB: Cortex-M3, no DSP, no FPU)",
            fpu=False,
            dsp=False,
            tflm=False,  # 8 KB of RAM, 128 KB of flash
            # 2 KB of stack leaves the C engine 520 B short of 8 KB; its peak is 1,080 B here.
            c_stack_size=1280,
        ),
        Board(
            cpu="cortex-m33",
            machine="mps2-an505",
            device="ARMCM33",
            cpu_flags=("-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-mthumb"),
            # Boots Secure with its vector table at 0x10000000: the Secure alias of SSRAM1.
            code=Region("SSRAM1", 0x10000000, 4 * MiB),
            data=Region("SSRAM2/3", 0x38000000, 4 * MiB),  # Secure alias
            # 12,000 ticks for 600 K instructions: SysTick runs at 20 MHz here, not 25.
            instructions_per_tick=50.0,
            macs_per_instruction=2,
            description="Arm MPS2 with AN505 (Cortex-M33, TrustZone, FPU, DSP)",
            tflm=False,  # TFLM's firmware is not built for it yet
        ),
        *(
            Board(
                cpu=isa,
                machine="sifive_e",
                device="",
                # GCC 12 has no rv32imc multilib: rv32imc links rv32im's libc and libgcc (no
                # compressed instructions in those), rv32imac its own. -march=..._zicsr would
                # pick a 64-bit multilib: board.c enables Zicsr around its CSR reads instead.
                cpu_flags=(f"-march={isa}", "-mabi=ilp32"),
                # HiFive1: 16 MB of SPI flash mapped at 0x20000000; QEMU's reset vector jumps
                # to 0x20400000, past the 4 MB the bootloader keeps.
                code=Region("flash", 0x20400000, 12 * MiB),
                data=Region("DTIM", 0x80000000, 16 * KiB),
                # minstret counts instructions itself (exactly, under -icount shift=0).
                instructions_per_tick=1.0,
                macs_per_instruction=1,  # MUL then ADD, no SIMD (no P extension)
                description=f"SiFive HiFive1 (FE310: E31 core, run as {isa.upper()}, no FPU)",
                fpu=False,
                dsp=False,
                # TFLM is C++: riscv64-unknown-elf has no libstdc++ nor newlib in Debian.
                tflm=False,
                arch="riscv",
            )
            for isa in ("rv32imc", "rv32imac")
        ),
    )
}
# The CPUs TFLM's firmware (the `firmware` command) builds for.
TFLM_CPUS = tuple(cpu for cpu, board in BOARDS.items() if board.tflm)

KERNELS = ("reference", "cmsis-nn")


def board_for(cpu: str) -> Board:
    """The board row for a CPU name; a one-line error listing the known ones otherwise."""
    try:
        return BOARDS[cpu]
    except KeyError:
        raise MnistEdgeError(f"Unknown CPU {cpu!r}: expected one of {', '.join(BOARDS)}.") from None

"""Building: the toolchain, the TFLM library (once per configuration, cached), the firmware link,
and what the ELF and its linker map say about flash and RAM.

Everything is built by the generated project's own Makefile, so the Makefile a user gets is the
one that built the ELF beside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.firmware.boards import ARCHES
from mnist_edge.processes import stream

log = logging.getLogger(__name__)

TOOLCHAIN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-dev"
RISCV_TOOLCHAIN_PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"
# Each architecture's Debian packages (boards.ARCHES' keys).
PACKAGES = {"arm": TOOLCHAIN_PACKAGES, "riscv": RISCV_TOOLCHAIN_PACKAGES}


@dataclass(frozen=True)
class Toolchain:
    """A cross gcc (arm-none-eabi-gcc, riscv64-unknown-elf-gcc) and make, as found on PATH."""

    gcc: str
    version: str  # first line of `gcc --version`
    make: str
    # The Makefiles' variable for the compiler's prefix (boards.ARCHES)
    prefix_variable: str = "GCC_PREFIX"

    def describe(self) -> dict[str, str]:
        return {"gcc": self.version, "path": self.gcc}


def _install_hint(what: str, packages: str = TOOLCHAIN_PACKAGES) -> str:
    return f"{what}: install Debian's {packages} (apt-get install {packages})."


def find_toolchain(arch: str = "arm") -> Toolchain:
    """The cross compiler with its C library (Arm: newlib and libstdc++'s headers for TFLM;
    RISC-V: picolibc), and make; a one-line error naming the packages if not."""
    prefix, variable = ARCHES[arch][:2]
    packages, libc_file = (
        (TOOLCHAIN_PACKAGES, "nano.specs")
        if arch == "arm"
        else (RISCV_TOOLCHAIN_PACKAGES, "picolibc.specs")
    )
    gcc = shutil.which(f"{prefix}gcc")
    if gcc is None:
        raise MissingDependencyError(_install_hint(f"{prefix}gcc is not on PATH", packages))
    if arch == "arm" and shutil.which(f"{prefix}g++") is None:
        raise MissingDependencyError(_install_hint(f"{prefix}g++ is not on PATH", packages))
    specs = subprocess.run(
        [gcc, f"-print-file-name={libc_file}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not os.path.isabs(specs):  # gcc echoes the bare name when it finds no such file
        raise MissingDependencyError(_install_hint(f"{gcc} has no {libc_file}", packages))
    make = shutil.which("make")
    if make is None:
        raise MissingDependencyError("make is not on PATH: install Debian's make.")
    version = subprocess.run(
        [gcc, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return Toolchain(
        gcc=gcc, version=version[0] if version else "unknown", make=make, prefix_variable=variable
    )


def jobs() -> int:
    """Parallel compile jobs: the cores this process may run on."""
    with contextlib.suppress(AttributeError):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# ----------------------------------------------------------------------------- make


@dataclass(frozen=True)
class MakeRun:
    """A finished make: its output lines and how long it took."""

    lines: tuple[str, ...]
    seconds: float


def _first_error(lines: list[str]) -> str:
    for pattern in (r"region `\w+' overflowed", r"\berror\b", r"undefined reference", r"\*\*\*"):
        for line in lines:
            if re.search(pattern, line):
                return line.strip()
    return lines[-1].strip() if lines else "no output"


def make(
    project: Path,
    targets: list[str],
    variables: dict[str, str],
    toolchain: Toolchain,
    log_file: Path,
    what: str,
    on_line: Callable[[str], None] | None = None,
    old: tuple[str, ...] = (),
) -> MakeRun:
    """Run the project's Makefile; MnistEdgeError with the first error line if it fails."""
    command = [toolchain.make, "-C", str(project), f"-j{jobs()}", *targets]
    command += [f"-o{path}" for path in old]  # taken as up to date, never rebuilt
    command += assign(variables)
    command.append(f"{toolchain.prefix_variable}={toolchain.gcc.removesuffix('gcc')}")
    started = time.perf_counter()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as record:
        record.write(" ".join(command) + "\n")

        def each(line: str) -> None:
            record.write(line + "\n")
            if on_line is not None:
                on_line(line)

        code, lines = stream(command, each)
    if code != 0:
        raise MnistEdgeError(f"{what} failed: {_first_error(lines)} (full log: {log_file}).")
    return MakeRun(tuple(lines), time.perf_counter() - started)


def assign(variables: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in variables.items()]


# ----------------------------------------------------------------------------- ELF and map

SHT_NOBITS = 8
SHF_WRITE, SHF_ALLOC = 0x1, 0x2
RESERVED_SECTIONS = (".stack", ".heap")  # reservations, not data: the stack peak is measured


@dataclass(frozen=True)
class Section:
    """An allocated section of the ELF."""

    name: str
    address: int
    size: int
    loaded: bool  # has bytes in the image (PROGBITS), not NOBITS
    writable: bool


def elf_sections(path: Path) -> list[Section]:
    """The allocated sections of a 32-bit little-endian ELF, read from its section headers."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise MnistEdgeError(f"{path}: not a 32-bit little-endian ELF file.")
    header = struct.unpack_from("<16sHHIIIIIHHHHHH", data, 0)
    shoff, shentsize, shnum, shstrndx = header[6], header[11], header[12], header[13]
    raw = [struct.unpack_from("<10I", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = raw[shstrndx][4]

    def name(offset: int) -> str:
        end = data.index(b"\0", names_offset + offset)
        return data[names_offset + offset : end].decode()

    return [
        Section(
            name=name(entry[0]),
            address=entry[3],
            size=entry[5],
            loaded=entry[1] != SHT_NOBITS,
            writable=bool(entry[2] & SHF_WRITE),
        )
        for entry in raw
        if entry[2] & SHF_ALLOC and entry[5] > 0
    ]


_INPUT = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)(?:\s+(.*))?$")
_OUTPUT = re.compile(r"^(\.\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)")


def map_attribution(
    map_text: str,
    sections: list[str],
    component_of: Callable[[str], str],
    components: tuple[str, ...],
    default: str,
) -> dict[str, dict[str, int]]:
    """Bytes per component in each named output section, from a GNU ld map.

    Each input section is named with the object (or `archive(member)`) it comes from, which
    `component_of` maps to one of `components`; bytes the linker made itself count for `default`.
    An input section owns the bytes from its address to the next one's: alignment padding
    counts for the section before it, and merged strings (`.str1.4`, listed with their size
    before merging) for the first at an address. So the components add up to the output
    section's size exactly.
    """
    start = map_text.find("Linker script and memory map")
    lines = map_text[start:].splitlines()
    # ld wraps a line after a long section name: join it with the next.
    joined: list[str] = []
    for line in lines:
        if (
            joined
            and re.match(r"^\s+0x[0-9a-f]+\s+0x[0-9a-f]+", line)
            and re.match(r"^ ?\S+$", joined[-1])
        ):
            joined[-1] += line
        else:
            joined.append(line)
    bounds: dict[str, tuple[int, int]] = {}
    entries: dict[str, list[tuple[int, str]]] = {}
    current: str | None = None
    for line in joined:
        if not line.startswith(" "):
            match = _OUTPUT.match(line)
            current = match.group(1) if match and match.group(1) in sections else None
            if current is not None:
                bounds[current] = (int(match.group(2), 16), int(match.group(3), 16))
                entries[current] = []
            continue
        if current is None or line.startswith(" *fill*"):
            continue
        match = _INPUT.match(line)
        if match and int(match.group(3), 16) > 0:
            source = (match.group(4) or "").strip()
            entries[current].append(
                (int(match.group(2), 16), component_of(source) if source else default)
            )
    result: dict[str, dict[str, int]] = {}
    for name, (base, size) in bounds.items():
        split = dict.fromkeys(components, 0)
        ordered = sorted(entries[name], key=lambda entry: entry[0])
        if not ordered or ordered[0][0] != base:
            ordered.insert(0, (base, default))  # linker-made bytes before the first input section
        ends = [address for address, _ in ordered[1:]] + [base + size]
        for (address, component), end in zip(ordered, ends, strict=True):
            split[component] += end - address
        result[name] = split
    return result

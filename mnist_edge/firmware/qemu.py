"""Running firmware in QEMU and reading what it prints.

The firmware prints through semihosting, which QEMU writes to its own stdout (README of the
generated project):

    OUT <index> <o0> ... <oN>                   each output byte, as int8
    INSTR <test-index> <instructions>
    RESULT golden <identical>/<count> correct <k>/<n> arena <arena_used_bytes> stack <peak bytes>
    LAYER <test-index> <name> <instructions>    one per layer (or step), of one profiled inference

and exits through semihosting with 0 when every output matched its golden vector, else 1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MissingDependencyError, MnistEdgeError
from mnist_edge.firmware.boards import Board

QEMU = "qemu-system-arm"
# The Debian package of each QEMU program the boards use
QEMU_PACKAGES = {"qemu-system-arm": "qemu-system-arm", "qemu-system-riscv32": "qemu-system-misc"}


def find_qemu(program: str = QEMU) -> tuple[str, str]:
    """A QEMU program's path and version line; a one-line error naming the package if absent."""
    path = shutil.which(program)
    if path is None:
        package = QEMU_PACKAGES.get(program, program)
        raise MissingDependencyError(
            f"{program} is not on PATH: install Debian's {package} (apt-get install {package})."
        )
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    return path, lines[0] if lines else "unknown"


@dataclass(frozen=True)
class ImageRecord:
    """One image's inference on the device: its int8 outputs and the instructions it took."""

    index: int
    outputs: tuple[int, ...]
    instructions: int


@dataclass(frozen=True)
class LayerLine:
    """A LAYER line: the instructions one layer (or fused step) of a profiled inference took."""

    index: int  # the test image's
    name: str
    instructions: int


@dataclass(frozen=True)
class Summary:
    """The RESULT line."""

    identical: int
    count: int
    correct: int
    images: int
    arena_used_bytes: int
    stack_peak_bytes: int


@dataclass(frozen=True)
class Uart:
    """Everything the firmware printed, parsed."""

    images: tuple[ImageRecord, ...]
    summary: Summary | None
    other: tuple[str, ...]  # lines outside the protocol: TFLM's log, ERROR and FAULT lines
    layers: tuple[LayerLine, ...] = ()  # in the order printed

    @property
    def error(self) -> str | None:
        """The first ERROR or FAULT line, if the firmware printed one."""
        for line in self.other:
            if line.startswith(("ERROR", "FAULT")):
                return line
        return None


_INT = r"(-?\d+)"
_OUT = re.compile(rf"^OUT (\d+)((?: {_INT})+)$")
_INSTR = re.compile(r"^INSTR (\d+) (\d+)$")
_LAYER = re.compile(r"^LAYER (\d+) (\S+) (\d+)$")
_RESULT = re.compile(r"^RESULT golden (\d+)/(\d+) correct (\d+)/(\d+) arena (\d+) stack (\d+)$")


def parse_uart(text: str, output_bytes: int | None = None) -> Uart:
    """Parse the firmware's output; MnistEdgeError if a protocol line is malformed (an OUT line
    of other than `output_bytes` int8 values; None: any count, the same on every line) or an input
    has an OUT line without its INSTR line (or the other way round)."""
    outputs: dict[int, tuple[int, ...]] = {}
    instructions: dict[int, int] = {}
    order: list[int] = []
    summary = None
    other, layers = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := _OUT.match(line):
            index = int(match.group(1))
            values = tuple(int(v) for v in match.group(2).split())
            output_bytes = len(values) if output_bytes is None else output_bytes
            if len(values) != output_bytes or any(not -128 <= v <= 127 for v in values):
                raise MnistEdgeError(
                    f"Malformed firmware line (expected {output_bytes} int8): {line}"
                )
            outputs[index] = values
            order.append(index)
        elif match := _INSTR.match(line):
            instructions[int(match.group(1))] = int(match.group(2))
        elif match := _RESULT.match(line):
            summary = Summary(*(int(g) for g in match.groups()))
        elif match := _LAYER.match(line):
            layers.append(LayerLine(int(match.group(1)), match.group(2), int(match.group(3))))
        elif line.startswith(("OUT ", "INSTR ", "RESULT ", "LAYER ")):
            raise MnistEdgeError(f"Malformed firmware line: {line}")
        else:
            other.append(line)
    if set(outputs) != set(instructions):
        unpaired = sorted(set(outputs) ^ set(instructions))
        raise MnistEdgeError(
            f"Firmware printed OUT without INSTR (or back) for image {unpaired[0]}."
        )
    return Uart(
        images=tuple(ImageRecord(i, outputs[i], instructions[i]) for i in order),
        summary=summary,
        other=tuple(other),
        layers=tuple(layers),
    )


@dataclass(frozen=True)
class QemuRun:
    """A finished QEMU run: its exit status, what the firmware printed, the wall time."""

    command: tuple[str, ...]
    returncode: int
    uart: Uart
    stdout: str
    stderr: str
    seconds: float


def qemu_command(board: Board, elf: Path, qemu: str | None = None) -> list[str]:
    """The command line that runs the ELF on the board, counting instructions (`qemu`: the
    program, the board's own when None)."""
    return [qemu or board.qemu, *board.qemu_args, "-kernel", str(elf)]


def run_firmware(
    board: Board,
    elf: Path,
    timeout_s: float,
    qemu: str | None = None,
    cwd: Path | None = None,
    outputs: int | None = None,
) -> QemuRun:
    """Run the ELF in QEMU; MnistEdgeError if it does not finish within timeout_s (a firmware
    whose TFLM aborted can spin forever). `cwd` is QEMU's working directory, where the
    firmware's semihosting opens files (this process's own when None); `outputs` the output
    bytes each OUT line must have (None: any)."""
    # Absolute: QEMU runs in `cwd`, which need not be where the path was made relative to.
    command = qemu_command(board, Path(elf).resolve(), qemu)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group, so a timeout kills all of it
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, _ = process.communicate()
        last = [line for line in stdout.splitlines() if line.strip()]
        raise MnistEdgeError(
            f"QEMU ({board.machine}) did not finish {elf.name} within {timeout_s:g} s; "
            f"last line: {last[-1] if last else '(none)'}."
        ) from None
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    return QemuRun(
        command=tuple(command),
        returncode=process.returncode,
        uart=parse_uart(stdout, outputs),
        stdout=stdout,
        stderr=stderr,
        seconds=time.perf_counter() - started,
    )

"""Child processes whose output is streamed line by line: firmware builds, package installs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable

from mnist_edge.errors import MnistEdgeError


def stream(
    command: list[str],
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Run `command` (stdout and stderr merged), handing each line, without its line end, to
    `on_line` as it comes; returns (exit status, every line).

    The child gets its own process group, and an interruption here (Ctrl-C, an exception from
    `on_line`) stops that whole group (every compiler of a `make -j`, pip's workers) before it
    is raised again.
    """
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise MnistEdgeError(f"Cannot run {command[0]}: {exc.strerror or exc}.") from None
    lines: list[str] = []
    assert process.stdout is not None
    try:
        with process.stdout:
            for raw in process.stdout:
                line = raw.rstrip()
                lines.append(line)
                if on_line is not None:
                    on_line(line)
        process.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    return process.returncode, lines

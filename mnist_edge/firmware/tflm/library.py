"""TFLM and its kernels compiled once per configuration (tflm.mk's text, the compiler, the
sources) into the cache, and reused by every later build of that configuration."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import cache_dir
from mnist_edge.firmware.build import Toolchain, assign, jobs, make
from mnist_edge.sources import SourceTree, exclusive

log = logging.getLogger(__name__)

LIBRARY_FORMAT = 2  # bump when the library's layout in the cache changes
DONE = "library.json"


@dataclass(frozen=True)
class Library:
    """TFLM and the kernels compiled for one configuration, in the cache."""

    folder: Path  # the Makefile's LIB_DIR
    key: str
    files: int
    built_now: bool
    seconds: float  # compile time when it was built (now or earlier)

    @property
    def archive(self) -> Path:
        return self.folder / "libtflm.a"


def library_key(library_makefile: str, toolchain: Toolchain, sources: SourceTree) -> str:
    """What the library's objects depend on: its Makefile's text (flags, files), the compiler,
    the sources' tree hashes. Paths are not part of it."""
    payload = {
        "format": LIBRARY_FORMAT,
        "tflm.mk": library_makefile,
        "gcc": toolchain.version,
        "sources": sources.describe(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _cached(folder: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((folder / DONE).read_text())
        if (folder / "libtflm.a").is_file():
            return record
    return None


class _Progress:
    """Compile progress on stderr: a rich bar on a terminal, else a log line every tenth."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.reported = label, total, 0, 0
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.task = self.bar.add_task(label, total=total)
            self.bar.start()

    def line(self, text: str) -> None:
        if not text.startswith(("CC ", "CXX ")):
            return
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
        elif self.done * 10 // self.total > self.reported or self.done == self.total:
            self.reported = self.done * 10 // self.total
            log.info("%s: %d/%d files", self.label, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def build_library(
    project: Path,
    key: str,
    label: str,
    sources: SourceTree,
    toolchain: Toolchain,
) -> Library:
    """The library for this project's tflm.mk, from the cache or compiled now (into a staging
    folder renamed when complete, so an interrupted build is never reused)."""
    root = cache_dir() / "firmware" / "lib"
    folder = root / key
    if (record := _cached(folder)) is not None:
        return Library(folder, key, record["files"], False, record["seconds"])
    # One library build at a time, across processes: the 2 cores are shared.
    with exclusive(root / ".build.lock", f"waiting for another library build to finish ({label})"):
        if (record := _cached(folder)) is not None:  # built by another process meanwhile
            return Library(folder, key, record["files"], False, record["seconds"])
        staging = root / f"{key}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        variables = {"SOURCES": str(sources.root), "LIB_DIR": str(staging)}
        listing = subprocess.run(
            [toolchain.make, "-s", "-C", str(project), "lib-sources", *assign(variables)],
            capture_output=True,
            text=True,
            check=False,
        )
        files = [line for line in listing.stdout.splitlines() if line.strip()]
        if listing.returncode != 0 or not files:
            raise MnistEdgeError(f"Cannot list the library's sources: {listing.stderr.strip()}")
        missing = [path for path in files if not Path(path).is_file()]
        if missing:
            raise MnistEdgeError(f"Library source missing from {sources.root}: {missing[0]}.")
        log.info("compiling %s: %d files on %d cores", label, len(files), jobs())
        progress = _Progress(f"compiling {label}", len(files))
        try:
            run = make(
                project,
                ["lib"],
                variables,
                toolchain,
                root / f"{key}.log",
                f"Compiling {label}",
                progress.line,
            )
        finally:
            progress.close()
        record = {"key": key, "label": label, "files": len(files), "seconds": run.seconds}
        (staging / DONE).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        log.info("compiled %s in %.0f s", label, run.seconds)
        return Library(folder, key, len(files), True, run.seconds)

"""Atomic writes and checksums: an artifact is either the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_edge.errors import MnistEdgeError


def cache_dir() -> Path:
    """The product's cache (firmware sources and builds, proof environments):
    $MNIST_EDGE_CACHE, else ~/.cache/mnist-edge. MNIST itself may live elsewhere
    ($MNIST_EDGE_DATA, see data.default_cache_dir)."""
    env = os.environ.get("MNIST_EDGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnist-edge"


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _staging_file(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file 0600; an artifact gets the usual permissions (0666 less umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def write_files_atomic(files: dict[Path, bytes]) -> None:
    """Write several files as one step: stage each beside its target, fsync, then rename all.

    A failure while staging (a full disk, a read-only folder, Ctrl-C) leaves every target as it
    was and removes the staged files; a reader never sees a truncated file under a real name.
    """
    staged: list[tuple[Path, Path]] = []
    current = None
    try:
        for current, data in files.items():
            current = Path(current)
            tmp = _staging_file(current)
            staged.append((tmp, current))
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, path in staged:
            current = path
            os.replace(tmp, path)
    except OSError as exc:
        raise MnistEdgeError(f"Cannot write {current}: {exc.strerror or exc}.") from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` atomically (temporary file in the same folder, then rename)."""
    write_files_atomic({Path(path): data})


def json_bytes(payload: Any) -> bytes:
    """Indented JSON with a trailing newline, as every record in the artifacts folder."""
    return (json.dumps(payload, indent=2) + "\n").encode()


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically."""
    write_bytes_atomic(path, json_bytes(payload))


def prepare_output_dir(path: Path) -> Path:
    """Create the artifacts folder if needed; refuse a file or an unwritable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MnistEdgeError(f"Artifacts path {path} is a file; expected a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistEdgeError(f"Cannot create artifacts folder {path}: {exc.strerror}.") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise MnistEdgeError(f"Artifacts folder {path} is not writable.")
    return path


def refuse_overwrite(paths: list[Path], overwrite: bool) -> None:
    """Raise if any of `paths` exists and `overwrite` is off (a batch tool never prompts)."""
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise MnistEdgeError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "pass --overwrite to replace."
        )


def _flush_all() -> None:
    """Flush Python's streams and C's stdio buffers, so bytes land where they were written."""
    import ctypes
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    # No C library to look up (Windows): Python's own flush is all there is.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)  # C code's buffered printf, or it would flush later


@contextlib.contextmanager
def _redirect_fds(fds: tuple[int, ...], target: int) -> Iterator[None]:
    """Point file descriptors at `target` for the block, then put them back."""
    _flush_all()
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target, fd)
        yield
    finally:
        _flush_all()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send stdout to stderr for the block, both Python's and file descriptor 1.

    Converters and native runtimes print banners to stdout (TFLM from C, the TFLite converter
    from Python); under --json stdout must carry the JSON alone.
    """
    import sys

    with _redirect_fds((1,), 2), contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def capture_native_output(fds: tuple[int, ...] = (1, 2)) -> Iterator[list[str]]:
    """Collect what is written to these file descriptors during the block; yields a list that
    holds the text once the block ends."""
    captured: list[str] = []
    with tempfile.TemporaryFile() as sink:
        try:
            with _redirect_fds(fds, sink.fileno()):
                yield captured
        finally:
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Keep C and C++ libraries' log lines (TensorFlow's absl logging, TFLM's prints) off the
    terminal for the block, while Python's own stderr (our progress, errors, tracebacks) stays.

    File descriptor 2 is pointed at a temporary file; `sys.stderr`, where it wrote to that same
    descriptor, is replaced by a stream on a copy of the real one. Yields a list that holds the
    captured text once the block ends (to show when something went wrong).
    """
    import io
    import sys

    captured: list[str] = []
    try:
        own = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        own = False  # a test runner's buffer: Python's writes never reach descriptor 2 anyway
    saved_stream = sys.stderr
    real = os.dup(2)
    # Closed in the finally below, after the block: not a `with` of its own.
    stream = open(real, "w", buffering=1, closefd=False, errors="replace") if own else None  # noqa: SIM115
    with tempfile.TemporaryFile() as sink:
        _flush_all()
        os.dup2(sink.fileno(), 2)
        if stream is not None:
            sys.stderr = stream
        try:
            yield captured
        finally:
            _flush_all()
            if stream is not None:
                sys.stderr = saved_stream
                stream.close()
            os.dup2(real, 2)
            os.close(real)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))

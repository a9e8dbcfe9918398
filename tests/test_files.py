"""Writes are atomic: a full disk, an exception or a kill leaves the old files or the new ones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import write_files_atomic
from tests.conftest import snapshot
from tests.helpers import assert_exit

runner = CliRunner()


def test_all_files_or_none_when_a_write_fails(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"old a")
    (tmp_path / "b.bin").write_bytes(b"old b")
    calls = []
    real_fsync = os.fsync

    def fsync_then_fail(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second staged file: as if the disk filled up
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_fail)
    with pytest.raises(MnistEdgeError, match="Cannot write .*b.bin: No space left on device"):
        write_files_atomic({tmp_path / "a.bin": b"new a", tmp_path / "b.bin": b"new b"})
    assert (tmp_path / "a.bin").read_bytes() == b"old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]  # no temp left


def test_keyboard_interrupt_while_staging_changes_nothing(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"old a")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_files_atomic({tmp_path / "a.bin": b"new a", tmp_path / "c.bin": b"new c"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old a"


@pytest.mark.slow
def test_export_on_a_full_disk_leaves_the_old_export(small_disk, exported):
    """A real 2 MiB tmpfs: the model fits, the six exports do not."""
    source, _ = exported
    shutil.copy(source / "model.keras", small_disk / "model.keras")
    before = snapshot(small_disk)
    result = runner.invoke(app, ["export", "--formats", "all", "-a", str(small_disk)])
    assert_exit(result, 2)
    assert "No space left on device" in result.stderr
    assert snapshot(small_disk) == before  # no partial export, no staged temp files


def _export_command(artifacts):
    code = "from mnist_edge.cli import main; main()"
    return [sys.executable, "-c", code, "-q", "export", "--int8", "--overwrite", "-a", artifacts]


@pytest.mark.slow
def test_killed_export_leaves_each_file_old_or_new(tmp_path, exported):
    """Kill `export` at several moments; every artifact is the old file or the whole new one."""
    source, _ = exported
    fresh = tmp_path / "fresh"
    shutil.copytree(source, fresh)
    start = time.monotonic()
    subprocess.run(_export_command(fresh), check=True, capture_output=True)
    took = time.monotonic() - start
    new = snapshot(fresh)
    old = snapshot(source)
    # Moments as fractions of this machine's own export, so that a fast machine is killed
    # mid-write too (fixed seconds were past the end on a fast one).
    for fraction, sig in ((0.3, signal.SIGKILL), (0.6, signal.SIGINT), (0.9, signal.SIGKILL)):
        target = tmp_path / f"killed-{fraction}"
        shutil.copytree(source, target)
        process = subprocess.Popen(
            _export_command(target), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(fraction * took)
        process.send_signal(sig)
        process.wait(timeout=60)
        where = f"after {sig!r} at {fraction:.0%} of {took:.1f} s"
        for name, digest in snapshot(target).items():
            if name.endswith(".tmp"):  # a SIGKILL can leave a hidden staged file, never a name
                assert name.startswith(".")
            elif digest == old.get(name) or digest == new.get(name):
                pass
            elif name == "model.onnx":
                # tf2onnx numbers its helper nodes in set order, which differs between
                # processes: a new ONNX file is whole if ONNX's checker accepts it
                onnx = pytest.importorskip("onnx")
                onnx.checker.check_model(onnx.load(target / name))
            elif name == "export.json":  # the export finished: the new record, for this folder
                assert _record(target / name) == _record(fresh / name), where
            else:
                raise AssertionError(f"{name} is neither the old file nor the new one {where}")


def _record(path):
    """export.json without what differs between two runs of one export (timings, the folder,
    the ONNX file's bytes), after checking that every file it lists is the one on disk."""
    from mnist_edge.files import sha256_file

    record = json.loads(path.read_text())
    assert record.pop("source") == str(path.parent / "model.keras")
    for entry in record["files"]:
        assert sha256_file(path.parent / entry["name"]) == entry["sha256"]
        entry.pop("seconds")
        if entry["name"] == "model.onnx":
            entry.pop("sha256")
            entry.pop("bytes")
    return record

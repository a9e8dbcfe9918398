"""The pinned third-party sources: found, checked by their tree hash, extracted once into the cache.

An archive is looked for, in order, in the folder passed as `sources`, in
$MNIST_EDGE_FIRMWARE_SOURCES, else downloaded from GitHub into the cache. Each is checked by its
content, not its bytes (GitHub's compression may change): the tree hash is the SHA-256 of the
sorted lines `RELPATH NUL sha256(file) LF` of its regular files, RELPATH without the leading
`REPO-COMMIT/` folder. An archive passed in is checked every time (about a second for all
seven); a checked extraction in the cache is reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import cache_dir, write_bytes_atomic

log = logging.getLogger(__name__)

SOURCES_ENV = "MNIST_EDGE_FIRMWARE_SOURCES"
MARKER = ".mnist-edge-source.json"
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Source:
    """One pinned repository at one commit, and the tree hash of its archive's content."""

    repo: str  # owner/name on GitHub
    commit: str
    tree_hash: str
    files: int
    role: str

    @property
    def name(self) -> str:
        return self.repo.split("/")[1]

    @property
    def folder(self) -> str:
        """The archive's top folder, and the extracted folder's name in the cache."""
        return f"{self.name}-{self.commit}"

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"

    @property
    def archive_names(self) -> tuple[str, ...]:
        """File names the archive may have: as mnist-edge stores it, and as GitHub serves it."""
        return (f"{self.folder}.tar.gz", f"{self.commit}.tar.gz")


# The commits TFLM 90b983c pins in tensorflow/lite/micro/tools/make/third_party_downloads.inc
# and ext_libs/*_download.sh (the shared SOURCES.md has the same table).
SOURCES: tuple[Source, ...] = (
    Source(
        "tensorflow/tflite-micro",
        "90b983c2b3f1480642e040bbd2ddb37b998f3424",
        "d67ab912fcf0d37846fd2dc1546bd3530dd19cadb2a04a4d4065f95bdaa11a65",
        1837,
        "the interpreter, reference kernels, kernels/cmsis_nn, the schema headers",
    ),
    Source(
        "ARM-software/CMSIS-NN",
        "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae",
        "c1493cf02f421c1335d788cfd85aee2ef859250e02e824fbcf0cc5371620a999",
        4185,
        "Arm's optimized int8 kernels",
    ),
    Source(
        "ARM-software/CMSIS_6",
        "5782d6f8057906d360f4b95ec08a2354afe5c9b9",
        "ed9a056c9d2d112173b81bbd9de9f29b026b5baafe76a60198a1b243ba358040",
        762,
        "Cortex-M core headers",
    ),
    Source(
        "ARM-software/Cortex_DFP",
        "c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf",
        "ddb9c9a6647319cef0efa38cc14ef083ed5aa708ff3c28ee7faf7792836f0663",
        210,
        "device headers (ARMCM4, ARMCM7, ARMCM55)",
    ),
    Source(
        "google/flatbuffers",
        "187240970746d00bbd26b0f5873ed54d2477f9f3",
        "3172b0e67287244fce56a937e8d6c9a7743e7a12dab676ef9d0ae90e20fbb42e",
        1881,
        "headers only (tag v25.9.23), with TFLM's flatbuffers.patch",
    ),
    Source(
        "google/gemmlowp",
        "719139ce755a0f31cbf1c37f7f98adcc7fc9f425",
        "f76f2794915edf374afa8a097628a3b5a8ae0df2e5eedafe0b4b54344747d09d",
        142,
        "the fixedpoint/ headers",
    ),
    Source(
        "google/ruy",
        "d37128311b445e758136b8602d1bbd2a755e115d",
        "7d2e8d4f2e00bf47a7820b1db82603b789d571699da6fe7c0cc1a8fcbc121222",
        140,
        "ruy/profiler/instrumentation.h only",
    ),
)
SOURCE_BY_NAME = {source.name: source for source in SOURCES}

# TFLM's patch for the flatbuffers headers (no default allocator, locale-independent off).
FLATBUFFERS_PATCH = "tensorflow/lite/micro/tools/make/flatbuffers.patch"


@dataclass(frozen=True)
class SourceTree:
    """The extracted, checked sources: one folder holding every `REPO-COMMIT/` folder."""

    root: Path

    def path(self, name: str) -> Path:
        """The extracted folder of a repository by its short name (tflite-micro, CMSIS-NN...)."""
        return self.root / SOURCE_BY_NAME[name].folder

    def licenses(self) -> dict[str, Path]:
        """Each repository's license file (all seven are Apache-2.0)."""
        found = {}
        for source in SOURCES:
            folder = self.root / source.folder
            for candidate in ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"):
                if (folder / candidate).is_file():
                    found[source.repo] = folder / candidate
                    break
        return found

    def describe(self) -> dict[str, dict[str, str]]:
        """repository -> commit and tree hash, for the JSON records."""
        return {s.repo: {"commit": s.commit, "tree_hash": s.tree_hash} for s in SOURCES}


def tree_hash_of_archive(archive: Path) -> tuple[str, int]:
    """The content hash of a GitHub-style .tar.gz (see the module docstring), and its file count."""
    lines = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                parts = member.name.split("/", 1)
                if len(parts) != 2:
                    continue
                handle = tar.extractfile(member)
                digest = hashlib.sha256(handle.read() if handle else b"").hexdigest()
                lines.append(f"{parts[1]}\0{digest}\n")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise MnistEdgeError(f"{archive}: not a readable .tar.gz archive ({exc}).") from None
    lines.sort()
    return hashlib.sha256("".join(lines).encode()).hexdigest(), len(lines)


def _check_archive(source: Source, archive: Path) -> None:
    got, files = tree_hash_of_archive(archive)
    if got != source.tree_hash:
        raise MnistEdgeError(
            f"{archive}: tree hash {got} ({files} files) is not the pinned {source.repo}@"
            f"{source.commit[:12]}'s {source.tree_hash} ({source.files} files); the archive is "
            "corrupt or another commit. Replace it, or delete it to download it again."
        )


def _find_archive(source: Source, folder: Path) -> Path | None:
    for name in source.archive_names:
        if (folder / name).is_file():
            return folder / name
    return None


def _download(source: Source, target: Path) -> None:
    log.info("downloading %s", source.url)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MnistEdgeError(
            f"Cannot download {source.url} ({reason}). Pass the folder holding the seven pinned "
            f"archives ({source.archive_names[0]} and the others) with --sources, or set "
            f"{SOURCES_ENV}."
        ) from None
    write_bytes_atomic(target, data)


HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def _apply_patch(patch: str, root: Path) -> None:
    """Apply a unified diff (`a/`-`b/` paths) to the files under root.

    The patch is pinned with the sources, so this reads just what `git diff` writes; a hunk
    whose lines do not match exactly is an error, never a fuzzy apply.
    """
    patched: dict[Path, list[str]] = {}
    path: Path | None = None
    offset = 0
    lines = iter(patch.splitlines())
    for line in lines:
        if line.startswith("+++ b/"):
            path = root / line[len("+++ b/") :]
            patched[path] = path.read_text().split("\n")
            offset = 0
            continue
        match = HUNK.match(line)
        if not match or path is None:
            continue
        old_count = int(match.group(2) or 1)
        new_count = int(match.group(3) or 1)
        old: list[str] = []
        new: list[str] = []
        while len(old) < old_count or len(new) < new_count:
            body = next(lines)
            if body.startswith("\\"):  # "\ No newline at end of file"
                continue
            tag, text = (body[:1] or " "), body[1:]
            if tag in " -":
                old.append(text)
            if tag in " +":
                new.append(text)
        at = int(match.group(1)) - 1 + offset
        if patched[path][at : at + len(old)] != old:
            raise MnistEdgeError(f"{FLATBUFFERS_PATCH} does not apply to {path} at line {at + 1}.")
        patched[path][at : at + len(old)] = new
        offset += len(new) - len(old)
    for target, content in patched.items():
        target.write_text("\n".join(content))


def _safe_extract(tar: tarfile.TarFile, target: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    root = target.resolve()
    for member in tar.getmembers():  # pragma: no cover - Python without extraction filters
        destination = (target / member.name).resolve()
        if not str(destination).startswith(str(root) + os.sep) or member.isdev():
            raise MnistEdgeError(f"Unsafe path in archive: {member.name}.")
    tar.extractall(target)  # noqa: S202 - every member checked above


def _extract(source: Source, archive: Path, root: Path) -> None:
    """Extract into root/REPO-COMMIT through a temporary folder, so a half extraction is never
    taken for a whole one."""
    final = root / source.folder
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.folder}.", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            _safe_extract(tar, staging)
        extracted = staging / source.folder
        if not extracted.is_dir():
            raise MnistEdgeError(f"{archive}: expected a top folder {source.folder}/.")
        if source.name == "flatbuffers":
            tflm = root / SOURCE_BY_NAME["tflite-micro"].folder
            _apply_patch((tflm / FLATBUFFERS_PATCH).read_text(), extracted)
        marker = {"repo": source.repo, "commit": source.commit, "tree_hash": source.tree_hash}
        (extracted / MARKER).write_text(json.dumps(marker) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(extracted, final)
    except OSError as exc:
        raise MnistEdgeError(f"Cannot extract {archive} into {root}: {exc}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def exclusive(lock: Path, waiting: str = "") -> Iterator[None]:
    """Hold a file lock across processes (two test runs, or a test run and a user's command),
    saying `waiting` when another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                log.info(waiting)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _extracted(source: Source, root: Path) -> bool:
    marker = root / source.folder / MARKER
    with contextlib.suppress(OSError, ValueError):
        return json.loads(marker.read_text()).get("tree_hash") == source.tree_hash
    return False


def prepare_sources(sources: Path | None = None, only: tuple[str, ...] = ()) -> SourceTree:
    """The seven pinned repositories (or `only` those named, e.g. ("CMSIS-NN",) for the C
    engine), checked and extracted in the cache (see the module doc)."""
    given = sources if sources is not None else os.environ.get(SOURCES_ENV) or None
    folder = Path(given).expanduser() if given else None
    if folder is not None and not folder.is_dir():
        what = "--sources" if sources is not None else SOURCES_ENV
        raise MnistEdgeError(f"{what} {folder}: no such folder (expected the pinned archives).")
    root = cache_dir() / "firmware" / "sources"
    downloads = cache_dir() / "firmware" / "downloads"
    # tflite-micro first: the flatbuffers extraction needs its patch.
    for source in (s for s in SOURCES if not only or s.name in only):
        if folder is not None:
            archive = _find_archive(source, folder)
            if archive is None:
                raise MnistEdgeError(
                    f"{folder}: no archive of {source.repo}@{source.commit[:12]} "
                    f"(expected {source.archive_names[0]} or {source.archive_names[1]})."
                )
            _check_archive(source, archive)
        elif _extracted(source, root):
            continue
        else:
            archive = downloads / source.archive_names[0]
            if not archive.is_file():
                _download(source, archive)
            _check_archive(source, archive)
        with exclusive(root.parent / ".sources.lock"):
            if not _extracted(source, root):  # or another process did meanwhile
                log.info("extracting %s", archive.name)
                _extract(source, archive, root)
    return SourceTree(root)

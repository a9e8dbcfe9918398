"""The environments a proof runs in, prepared in the product's cache when a proof is asked for,
and reused.

linux-aarch64 is three layers under `cache_dir()/proofs/linux-aarch64/`:

- `debian-bookworm-arm64-<key>/`: Debian 12's arm64 `python3.11` and `libstdc++6`, with all
  they depend on (39 packages, 16 MB), unpacked with `dpkg-deb -x`. `root/` is the sysroot;
  `views/<cpu>/` is the same tree (relative symlinks) plus the `/proc/cpuinfo` of the emulated
  board, which qemu-user serves from its `-L` prefix: under qemu-aarch64 a process would
  otherwise read the host's x86 /proc/cpuinfo, and the cpuinfo library that LiteRT and XNNPACK
  use to pick their kernels crashes on it (SIGSEGV at interpreter creation, seen here).
  The packages come from apt-get run with a private configuration (APT_CONFIG: its own
  sources.list, state, cache and architecture), checked against the host's Debian archive
  keyring: the host's apt setup is untouched. The other routes were worse:
  `dpkg --add-architecture arm64` changes the system (every later `apt-get update` fetches
  the arm64 indexes too); `debootstrap --foreign --arch=arm64` fetches a whole base system and
  its second stage needs a chroot under emulation (root, binfmt_misc), minutes instead of
  seconds.
- `site-<key>/`: the base install's dependencies as a device gets them, aarch64 wheels that pip
  lays into a folder (`pip install --target --platform manylinux_2_X_aarch64 --only-binary`),
  keyed by the requirements.
- `mnist-edge-<key>/`: mnist-edge itself, a wheel built from this source tree (as `pip install .`
  on the device would), installed with `--no-deps`; keyed by the sources' content, so a code
  change rebuilds this small layer only.

tflite-runtime-2.14 is a virtual environment (x86-64, the host's Python <= 3.11, numpy < 2) at
`cache_dir()/venv-tflite-runtime-2.14` (`legacy_runner.tflite_runtime_python()`).

Every layer is built in a staging folder beside its place and renamed when complete, under a
file lock (two processes never build the same layer; a staging folder left by a killed run is
removed by the next one). A missing tool, a failed download: one line naming what to install or
pass (MnistEdgeError), and no layer is left half-made.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.processes import stream

log = logging.getLogger(__name__)

AARCH64 = "linux-aarch64"
TFLITE_RUNTIME = "tflite-runtime-2.14"
PLATFORMS = (AARCH64, TFLITE_RUNTIME)

MARKER = ".mnist-edge-env.json"
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")

# Raspberry Pi OS bookworm is Debian 12 with its Python 3.11 and glibc 2.36.
DEBIAN_RELEASE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
DEBIAN_MIRROR_ENV = "MNIST_EDGE_DEBIAN_MIRROR"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARM64_PACKAGES = ("python3.11", "libstdc++6")  # libstdc++6: onnxruntime's and LiteRT's C++
TARGET_PYTHON = "3.11"
TARGET_GLIBC = (2, 36)
# pip does not widen a manylinux_2_X tag to older ones: every glibc a wheel may ask for, listed.
WHEEL_PLATFORMS = tuple(
    f"manylinux_2_{minor}_aarch64" for minor in range(TARGET_GLIBC[1], 16, -1)
) + ("manylinux2014_aarch64",)


@dataclass(frozen=True)
class Cpu:
    """An emulated Arm core (qemu's -cpu) and the /proc/cpuinfo of a board that has it."""

    name: str
    board: str
    cpuinfo: str


def _cpuinfo(features: str, variant: str, part: str, revision: int, model: str) -> str:
    core = (
        "BogoMIPS\t: 108.00\n"
        f"Features\t: {features}\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        f"CPU variant\t: {variant}\n"
        f"CPU part\t: {part}\n"
        f"CPU revision\t: {revision}\n"
    )
    processors = "\n".join(f"processor\t: {i}\n{core}" for i in range(4))
    return f"{processors}\nModel\t\t: {model}\n"


# The two 64-bit Raspberry Pi cores qemu-aarch64 7.2 emulates (`qemu-aarch64-static -cpu help`);
# the Features lines are those the boards' kernels print (what HWCAP says under qemu, too).
CPUS = {
    "cortex-a72": Cpu(
        "cortex-a72",
        "Raspberry Pi 4",
        _cpuinfo("fp asimd evtstrm crc32 cpuid", "0x0", "0xd08", 3, "Raspberry Pi 4 Model B"),
    ),
    "cortex-a76": Cpu(
        "cortex-a76",
        "Raspberry Pi 5",
        _cpuinfo(
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
            "lrcpc dcpop asimddp",
            "0x4",
            "0xd0b",
            1,
            "Raspberry Pi 5 Model B",
        ),
    ),
}
DEFAULT_CPU = "cortex-a72"


@dataclass(frozen=True)
class Environment:
    """A prepared target: how to start its Python, and what it is."""

    platform: str  # linux-aarch64 | tflite-runtime-2.14
    description: str  # "linux-aarch64, emulated: qemu-aarch64 7.2.22 (cortex-a72, ...)"
    command: tuple[str, ...]  # the target's Python, e.g. (qemu, -cpu, X, -L, VIEW, VIEW/python)
    env: dict[str, str] = field(repr=False)  # the whole environment of a target process
    layers: dict[str, str]  # layer -> folder
    built: tuple[str, ...]  # the layers built by this call (none: all came from the cache)
    seconds: float  # how long preparing took (checks included)
    emulator: str | None = None  # "qemu-aarch64 7.2.22"
    cpu: str | None = None
    warnings: tuple[str, ...] = ()  # what the device install lacks, say

    @property
    def emulated(self) -> bool:
        return self.emulator is not None


# --------------------------------------------------------------------------- shared


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _layer(
    root: Path,
    name: str,
    build: Callable[[Path], dict],
    complete: Callable[[Path], bool] = _complete,
    lock: Path | None = None,
) -> tuple[Path, bool]:
    """root/name, built by `build(staging)` unless complete; (folder, built now).

    `build` fills the staging folder and returns what the marker records; the folder is renamed
    into place only after the marker is written. Stale staging folders are removed under the
    lock (whoever holds it is the only builder).
    """
    final = root / name
    if complete(final):
        return final, False
    with _exclusive(lock or root / ".lock"):
        if complete(final):
            return final, False
        # Whoever holds the lock is the only builder: any staging folder left is a killed run's
        # (the whole platform folder, or this layer's alone under a lock of its own).
        for stale in root.glob("*.tmp" if lock is None else f"{name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = root / f"{name}.{os.getpid()}.tmp"
        started = time.perf_counter()
        try:
            staging.mkdir(parents=True)
            info = build(staging)
            info["seconds"] = round(time.perf_counter() - started, 1)
            info["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            (staging / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)  # a folder without its marker: never completed
            os.rename(staging, final)
        except OSError as exc:
            raise MnistEdgeError(
                f"Cannot prepare {final}: {exc.strerror or exc} (a full disk or a read-only "
                "cache? set MNIST_EDGE_CACHE to another folder)."
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return final, True


def _key(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _pip_reason(lines: list[str]) -> str:
    for line in lines:
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()[:200]
    return (lines[-1] if lines else "no output")[:200]


class _Progress:
    """INFO lines for a stream of downloads, at most one a second (and always the last)."""

    def __init__(self, what: str, total: int | None = None):
        self.what, self.total, self.count, self.last = what, total, 0, 0.0

    def step(self, item: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= 1.0 or self.count == self.total:
            self.last = now
            of = f"{self.count}/{self.total}" if self.total else f"{self.count}"
            log.info("%s (%s)... %s", self.what, of, item)


def _pip() -> list[str]:
    """This Python's pip (the product's own environment has it)."""
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise MnistEdgeError(
            f"pip is not installed in {sys.executable}: install it (python -m ensurepip) "
            "to prepare a proof environment."
        )
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def _pip_install(arguments: list[str], what: str) -> list[str]:
    """`pip install ARGUMENTS`, with a progress line per wheel; one line if it fails."""
    progress = _Progress(f"downloading {what}")

    def on_line(line: str) -> None:
        stripped = line.strip()
        for prefix in ("Downloading ", "Using cached ", "Processing "):
            if stripped.startswith(prefix):
                progress.step(stripped.removeprefix(prefix).split("/")[-1])

    env = {**os.environ, "PIP_PROGRESS_BAR": "off"}
    code, lines = stream([*_pip(), "install", "--progress-bar", "off", *arguments], on_line, env)
    if code != 0:
        raise MnistEdgeError(
            f"pip could not install {what} ({_pip_reason(lines)}): check the network, or point "
            "pip at a reachable index (PIP_INDEX_URL)."
        )
    return lines


def _installed(site: Path) -> dict[str, str]:
    """name -> version of the distributions in a --target folder."""
    found = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.lower().replace("_", "-")] = version
    return found

"""The emulated linux-aarch64 environment (see environments' module doc): Debian's arm64
Python 3.11 in a sysroot, the base install as aarch64 wheels, mnist-edge itself."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import cache_dir
from mnist_edge.processes import stream
from mnist_edge.proofs.environments import (
    AARCH64,
    ARM64_PACKAGES,
    CPUS,
    DEBIAN_KEYRING,
    DEBIAN_MIRROR,
    DEBIAN_MIRROR_ENV,
    DEBIAN_RELEASE,
    DEBIAN_SECURITY_MIRROR,
    DEFAULT_CPU,
    MARKER,
    QEMU_NAMES,
    TARGET_PYTHON,
    WHEEL_PLATFORMS,
    Environment,
    _complete,
    _installed,
    _key,
    _layer,
    _pip,
    _pip_install,
    _pip_reason,
    _Progress,
)

log = logging.getLogger(__name__)


def find_qemu() -> tuple[str, str]:
    """qemu-aarch64's path and version ("qemu-aarch64 7.2.22"); one line if it is absent."""
    for name in QEMU_NAMES:
        path = shutil.which(name)
        if path:
            break
    else:
        raise MnistEdgeError(
            "qemu-aarch64-static is not on PATH: install Debian's qemu-user-static "
            "(apt-get install qemu-user-static) to run the linux-aarch64 proof."
        )
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"version (\S+)", done.stdout)
    return path, f"qemu-aarch64 {match.group(1) if match else 'unknown'}"


def _need_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MnistEdgeError(
            f"{name} is not on PATH: the linux-aarch64 proof downloads Debian's arm64 Python with "
            f"apt; install {package} (a Debian or Ubuntu host)."
        )
    return path


def _mirrors(mirror: str | None) -> tuple[str, str]:
    mirror = (mirror or os.environ.get(DEBIAN_MIRROR_ENV) or DEBIAN_MIRROR).rstrip("/")
    if mirror == DEBIAN_MIRROR:
        return mirror, DEBIAN_SECURITY_MIRROR
    # A mirror of the main archive; its security suite beside it, as most mirrors lay them out.
    return mirror, f"{mirror}-security" if mirror.endswith("/debian") else mirror


def _apt_config(folder: Path, mirror: str, security: str) -> dict[str, str]:
    """A private apt: its own sources, state, cache and architecture; the env to run it with."""
    for sub in ("etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("state/lists/partial", "cache/archives/partial", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "state" / "status").touch()
    source = f"[arch=arm64 signed-by={DEBIAN_KEYRING}]"
    (folder / "etc" / "sources.list").write_text(
        f"deb {source} {mirror} {DEBIAN_RELEASE} main\n"
        f"deb {source} {mirror} {DEBIAN_RELEASE}-updates main\n"
        f"deb {source} {security} {DEBIAN_RELEASE}-security main\n"
    )
    lines = [
        f'Dir::Etc "{folder}/etc/";',
        'Dir::Etc::Main "apt.conf";',
        f'Dir::State "{folder}/state/";',
        f'Dir::State::status "{folder}/state/status";',
        f'Dir::Cache "{folder}/cache/";',
        f'Dir::Log "{folder}/log/";',
        'APT::Architecture "arm64";',
        'APT::Architectures { "arm64"; };',
        'APT::Install-Recommends "false";',
        'Acquire::Languages "none";',
        'Acquire::Retries "1";',
        'Acquire::http::Timeout "30";',
    ]
    if os.geteuid() == 0:
        # apt drops to _apt to download, and _apt cannot write in a root-owned cache.
        import pwd

        lines.append(f'APT::Sandbox::User "{pwd.getpwuid(os.geteuid()).pw_name}";')
    config = folder / "etc" / "apt.conf"
    config.write_text("\n".join(lines) + "\n")
    return {
        **os.environ,
        "APT_CONFIG": str(config),
        "LC_ALL": "C",
        "DEBIAN_FRONTEND": "noninteractive",
    }


def _apt_reason(lines: list[str]) -> str:
    for prefix in ("Err:", "W:", "E:"):
        for i, line in enumerate(lines):
            if line.startswith(prefix):
                if prefix == "Err:" and i + 1 < len(lines):
                    return lines[i + 1].strip()[:200]
                return line.removeprefix(prefix).strip()[:200]
    return (lines[-1] if lines else "no output")[:200]


def _apt_tools() -> tuple[str, str]:
    """apt-get and dpkg-deb, and Debian's archive keyring; one line naming what is missing."""
    apt_get = _need_tool("apt-get", "apt")
    dpkg_deb = _need_tool("dpkg-deb", "dpkg")
    if not DEBIAN_KEYRING.is_file():
        raise MnistEdgeError(
            f"{DEBIAN_KEYRING} is missing: install debian-archive-keyring, which checks the "
            "signatures of Debian's arm64 packages."
        )
    return apt_get, dpkg_deb


def _download_debs(apt: Path, mirror: str | None) -> list[Path]:
    """Debian's arm64 python3.11 and libstdc++6 and their dependencies, as .deb files."""
    apt_get, _ = _apt_tools()
    main, security = _mirrors(mirror)
    env = _apt_config(apt, main, security)

    def failed(lines: list[str], what: str) -> MnistEdgeError:
        return MnistEdgeError(
            f"Cannot download {what} from {main} ({_apt_reason(lines)}): check the network, or "
            f"pass a reachable Debian mirror ({DEBIAN_MIRROR_ENV}=URL)."
        )

    log.info("fetching Debian %s's arm64 package lists from %s", DEBIAN_RELEASE, main)
    code, lines = stream([apt_get, "update"], env=env)
    if code != 0 or any(line.startswith(("W:", "E:", "Err:")) for line in lines):
        raise failed(lines, f"Debian {DEBIAN_RELEASE}'s arm64 package lists")
    install = [apt_get, "install", "--download-only", "--yes", *ARM64_PACKAGES]
    code, lines = stream([*install, "--print-uris", "-qq"], env=env)
    uris = [line for line in lines if line.startswith("'")]
    if code != 0 or not uris:
        raise failed(lines, f"the arm64 packages {', '.join(ARM64_PACKAGES)}")
    size = sum(int(line.split()[2]) for line in uris if len(line.split()) > 2)
    log.info("downloading %d arm64 packages (%.1f MB)", len(uris), size / 1e6)
    progress = _Progress("downloading arm64 packages", len(uris))

    def on_line(line: str) -> None:
        if line.startswith("Get:"):
            parts = line.split()
            progress.step(parts[4] if len(parts) > 4 else "")

    code, lines = stream(install, on_line, env)
    debs = sorted((apt / "cache" / "archives").glob("*.deb"))
    if code != 0 or len(debs) != len(uris):
        raise failed(lines, "the arm64 packages")
    return debs


def _relative_symlinks(root: Path) -> None:
    """Absolute symlinks in the sysroot would point into the host (qemu's -L does not apply to
    the host kernel resolving a link): make them relative to the sysroot."""
    for link in root.rglob("*"):
        if link.is_symlink():
            target = os.readlink(link)
            if target.startswith("/"):
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))


def _build_sysroot(staging: Path, mirror: str | None) -> dict:
    apt = staging.with_name(staging.name.removesuffix(".tmp") + ".apt.tmp")
    shutil.rmtree(apt, ignore_errors=True)
    try:
        debs = _download_debs(apt, mirror)
        _, dpkg_deb = _apt_tools()
        log.info("unpacking %d arm64 packages", len(debs))
        root = staging / "root"
        root.mkdir()
        packages = {}
        for deb in debs:
            done = subprocess.run(
                [dpkg_deb, "-x", str(deb), str(root)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
                raise MnistEdgeError(f"Cannot unpack {deb.name} with dpkg-deb ({reason}).")
            name, version, _ = deb.name.split("_", 2)
            packages[name] = version.replace("%3a", ":")
    finally:
        shutil.rmtree(apt, ignore_errors=True)
    _relative_symlinks(root)
    python = root / "usr" / "bin" / f"python{TARGET_PYTHON}"
    if not python.is_file():
        raise MnistEdgeError(f"Debian's arm64 packages did not hold {python.name}.")
    for cpu in CPUS.values():
        view = staging / "views" / cpu.name
        (view / "proc").mkdir(parents=True)
        (view / "proc" / "cpuinfo").write_text(cpu.cpuinfo)
        for entry in root.iterdir():
            (view / entry.name).symlink_to(Path("..", "..", "root", entry.name))
    return {"release": DEBIAN_RELEASE, "architecture": "arm64", "packages": packages}


def _source_tree() -> Path | None:
    """The checkout mnist-edge runs from (pyproject.toml beside the package), if it does."""
    import mnist_edge

    top = Path(mnist_edge.__file__).resolve().parent.parent
    pyproject = top / "pyproject.toml"
    if pyproject.is_file() and re.search(r'name\s*=\s*"mnist-edge"', pyproject.read_text()):
        return top
    return None


def _project_files() -> tuple[Path, list[Path]]:
    """The files that make mnist-edge: the build files and the package, or the installed ones."""
    top = _source_tree()
    if top is not None:
        build = [
            p
            for p in sorted(top.iterdir())
            if p.is_file()
            and (
                p.name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")
                or p.name.startswith(("README", "LICENSE", "LICENCE", "NOTICE"))
            )
        ]
        package = [
            p
            for p in sorted((top / "mnist_edge").rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
        return top, build + package
    from importlib import metadata

    dist = metadata.distribution("mnist-edge")
    base = Path(dist.locate_file(""))
    files = [
        Path(dist.locate_file(f))
        for f in dist.files or []
        if "__pycache__" not in f.parts and not str(f).startswith("..")
    ]
    return base, sorted(p for p in files if p.is_file())


def _requirements(metadata_text: str) -> list[str]:
    """The base install's requirements (Requires-Dist without an extra) of a METADATA file."""
    requires = []
    for line in metadata_text.splitlines():
        if line.startswith("Requires-Dist:"):
            spec = line.removeprefix("Requires-Dist:").strip()
            if "extra ==" not in spec.replace("extra==", "extra =="):
                requires.append(spec)
    return requires


def _build_project(staging: Path, top: Path, files: list[Path], source: bool) -> dict:
    if not source:
        # Installed from a wheel: lay the same files down (pip put them there), metadata too.
        for path in files:
            target = staging / path.relative_to(top)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        metadata_files = list(staging.glob("mnist_edge-*.dist-info/METADATA"))
        requires = _requirements(metadata_files[0].read_text()) if metadata_files else []
        return {"from": f"the installed files in {top}", "requires": requires}
    with tempfile.TemporaryDirectory(prefix="mnist-edge-wheel-") as tmp:
        # A copy of the sources: building in the checkout would leave build/ and *.egg-info.
        copy = Path(tmp) / "src"
        for path in files:
            target = copy / path.relative_to(top)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        log.info("building the mnist-edge wheel from %s", top)
        done = subprocess.run(
            [*_pip(), "wheel", "--no-deps", "--progress-bar", "off", "-w", f"{tmp}/dist", copy],
            capture_output=True,
            text=True,
            check=False,
        )
        wheels = list(Path(tmp, "dist").glob("mnist_edge-*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise MnistEdgeError(
                f"pip could not build mnist-edge from {top} "
                f"({_pip_reason((done.stdout + done.stderr).splitlines())}): check the network "
                "(the build backend comes from the index), or PIP_INDEX_URL."
            )
        _pip_install(
            ["--no-deps", "--target", str(staging), str(wheels[0])], "the mnist-edge wheel"
        )
    (metadata_file,) = staging.glob("mnist_edge-*.dist-info/METADATA")
    # What `pip install .` leaves out of the package (data files pyproject does not declare).
    package = {str(p.relative_to(top)) for p in files if p.parts[len(top.parts)] == "mnist_edge"}
    installed = {str(p.relative_to(staging)) for p in (staging / "mnist_edge").rglob("*")}
    return {
        "from": f"a wheel built from {top}",
        "wheel": wheels[0].name,
        "requires": _requirements(metadata_file.read_text()),
        "missing": sorted(package - installed),
    }


def _build_site(staging: Path, requires: list[str]) -> dict:
    platforms = [argument for tag in WHEEL_PLATFORMS for argument in ("--platform", tag)]
    log.info("installing the base install's aarch64 wheels: %s", ", ".join(requires))
    _pip_install(
        [
            "--target",
            str(staging),
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            TARGET_PYTHON,
            "--implementation",
            "cp",
            "--abi",
            f"cp{TARGET_PYTHON.replace('.', '')}",
            *requires,
        ],
        "the aarch64 wheels",
    )
    return {
        "requires": requires,
        "platforms": list(WHEEL_PLATFORMS),
        "installed": _installed(staging),
    }


def _prune(root: Path, prefix: str, keep: Path, days: float = 1.0) -> None:
    """Older layers of one kind (an earlier source tree's mnist-edge) not used for a day."""
    cutoff = time.time() - days * 86400
    for old in root.glob(f"{prefix}*"):
        if old != keep and old.is_dir() and not old.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                if old.stat().st_mtime < cutoff:
                    shutil.rmtree(old)


def prepare_aarch64(cpu: str = DEFAULT_CPU, debian_mirror: str | None = None) -> Environment:
    """The emulated linux-aarch64 device: Debian's arm64 Python 3.11 with the base install."""
    started = time.perf_counter()
    if cpu not in CPUS:
        raise MnistEdgeError(f"Unknown cpu {cpu!r}: expected one of {', '.join(CPUS)}.")
    qemu, emulator = find_qemu()
    root = cache_dir() / "proofs" / AARCH64
    built = []

    sysroot_key = _key([DEBIAN_RELEASE, ARM64_PACKAGES, {n: c.cpuinfo for n, c in CPUS.items()}])
    sysroot_name = f"debian-{DEBIAN_RELEASE}-arm64-{sysroot_key}"
    if not _complete(root / sysroot_name):
        _apt_tools()  # before anything is made in the cache
    sysroot, fresh = _layer(
        root,
        sysroot_name,
        lambda staging: _build_sysroot(staging, debian_mirror),
    )
    if fresh:
        built.append("sysroot")

    top, files = _project_files()
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(top)).encode() + b"\0" + path.read_bytes() + b"\0")
    source = _source_tree() is not None
    project, fresh = _layer(
        root,
        f"mnist-edge-{digest.hexdigest()[:12]}",
        lambda staging: _build_project(staging, top, files, source),
    )
    if fresh:
        built.append("mnist-edge")
        _prune(root, "mnist-edge-", project)
    with contextlib.suppress(OSError):
        os.utime(project)  # in use: keeps it from being pruned
    installed = json.loads((project / MARKER).read_text())
    requires = installed["requires"]
    warnings = []
    if installed.get("missing"):
        missing = installed["missing"]
        warnings.append(
            f"the mnist-edge wheel lacks {len(missing)} file(s) of the source package "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): declare them as "
            "package data in pyproject.toml"
        )

    site_key = _key([requires, WHEEL_PLATFORMS, TARGET_PYTHON])
    site, fresh = _layer(root, f"site-{site_key}", lambda staging: _build_site(staging, requires))
    if fresh:
        built.append("site")

    view = sysroot / "views" / cpu
    python = view / "usr" / "bin" / f"python{TARGET_PYTHON}"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{project}{os.pathsep}{site}",
        "PYTHONNOUSERSITE": "1",
        # The layers stay as built: pip compiled them (the same 3.11 bytecode), nothing else.
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": tempfile.gettempdir(),
        "TMPDIR": tempfile.gettempdir(),
    }
    description = f"{AARCH64}, emulated: {emulator} ({cpu}, as in a {CPUS[cpu].board})"
    return Environment(
        platform=AARCH64,
        description=description,
        command=(qemu, "-cpu", cpu, "-L", str(view), str(python)),
        env=env,
        layers={"sysroot": str(sysroot), "mnist-edge": str(project), "site": str(site)},
        built=tuple(built),
        seconds=round(time.perf_counter() - started, 1),
        emulator=emulator,
        cpu=cpu,
        warnings=tuple(warnings),
    )

"""The machine the figures come from, detected (never assumed), and the library versions in use.

A leaf of the package: training picks its precision from these CPU flags, and every record
states them beside its figures.
"""

from __future__ import annotations

import contextlib
import os
import platform

from mnist_edge.records import Machine

CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def detect_machine() -> Machine:
    """CPU model and the SIMD/matrix features that decide which kernels run."""
    cpu, flags = "", set()
    # Linux names the model and its features per core; the first core's lines suffice.
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and not cpu:
                cpu = value
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    return Machine(
        cpu=cpu or platform.processor() or platform.machine() or "unknown",
        arch=platform.machine(),
        cores=os.cpu_count() or 1,
        features=[f for f in CPU_FEATURES if f in flags],
        os=f"{platform.system()} {platform.release()}",
    )


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (and Python), for the records."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions

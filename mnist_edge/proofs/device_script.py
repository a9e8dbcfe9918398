"""Run inside the target's own Python (the emulated linux-aarch64 device with the base install),
never imported by the host's mnist-edge.

Usage: python -m mnist_edge.proofs.device_script REQUEST.json REPLY.json. The request lists jobs
{"model", "runtime", "runs": [{"inputs": .npy, "outputs": .npy}, ...]}; each model is opened with
mnist-edge's own runner for that runtime (the code a device runs: LiteRT with or without
XNNPACK, onnxruntime), run on each input array (already in the model's input dtype), and the raw
outputs saved. The reply says per job whether it loaded (and why not) and how long it took (wall
time under emulation: not a latency), and what the device is: Python, packages, CPU features.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata

# The packages whose versions the proof records (TensorFlow and TFLM only if there: the base
# install has neither).
PACKAGES = ("mnist-edge", "numpy", "ai-edge-litert", "onnxruntime", "pillow", "typer", "rich")
PACKAGES += ("tensorflow", "tflite-micro")

# Linux's arm64 HWCAP and HWCAP2 bits (asm/hwcap.h) that LiteRT, XNNPACK, ruy and onnxruntime
# choose their kernels by.
HWCAP = {"fp": 0, "asimd": 1, "aes": 3, "crc32": 7, "atomics": 8, "fphp": 9, "asimdhp": 10}
HWCAP |= {"asimdrdm": 12, "asimddp": 20, "sve": 22, "asimdfhm": 23}
HWCAP2 = {"sve2": 1, "svei8mm": 9, "svebf16": 12, "i8mm": 13, "bf16": 14}
AT_HWCAP, AT_HWCAP2 = 16, 26


def cpu_features() -> list[str]:
    """The CPU features the kernel (here: qemu) reports to programs, by name."""
    if platform.machine() != "aarch64":
        return []
    import ctypes

    libc = ctypes.CDLL(None)
    libc.getauxval.restype = ctypes.c_ulong
    libc.getauxval.argtypes = [ctypes.c_ulong]
    found = []
    for names, key in ((HWCAP, AT_HWCAP), (HWCAP2, AT_HWCAP2)):
        bits = libc.getauxval(key)
        found += [name for name, bit in names.items() if bits >> bit & 1]
    return found


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def run(job: dict) -> dict:
    import numpy as np

    from mnist_edge.errors import MnistEdgeError, first_line
    from mnist_edge.runtimes import open_runner

    started = time.perf_counter()
    try:
        runner = open_runner(job["model"], job["runtime"])
        kernels = runner.kernels
        for item in job["runs"]:
            np.save(item["outputs"], runner.predict_raw(np.load(item["inputs"])))
    except MnistEdgeError as exc:
        return {"loaded": False, "error": first_line(exc), "kernels": None, "seconds": None}
    return {
        "loaded": True,
        "error": None,
        "kernels": kernels,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main(request_path: str, reply_path: str) -> None:
    with open(request_path) as handle:
        request = json.load(handle)
    results = [run(job) for job in request["jobs"]]
    reply = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "libc": " ".join(platform.libc_ver()),
        "packages": versions(),
        "cpu_features": cpu_features(),
        "results": results,
    }
    with open(reply_path, "w") as handle:
        json.dump(reply, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Platform proofs: a bundle run where it ships, in the target's own Python.

- `linux-aarch64`: Debian 12's arm64 Python 3.11 (what Raspberry Pi OS bookworm ships) with the
  mnist-edge base install (no TensorFlow), under qemu-aarch64 user-mode emulation, as a
  Raspberry Pi 4 (Cortex-A72) by default or a Pi 5 (Cortex-A76);
- `tflite-runtime-2.14`: the last standalone TFLite runtime, in its own virtual environment.

`prove(platform, bundle_dir, test_images, labels, host_tflm_outputs, extra_models)` prepares the
environment in the product's cache (environments.py; reused next time) and returns a
`records.Proof`. Nothing is prepared until a proof is asked for. Names are imported on first use:
the target's Python imports `mnist_edge.proofs.device_script` without the host-side modules.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "prove": "run",
    "read_bundle": "run",
    "Bundle": "run",
    "ProofFailed": "run",
    "prepare": "run",
    "prepare_aarch64": "aarch64",
    "prepare_tflite_runtime": "legacy_env",
    "Environment": "environments",
    "PLATFORMS": "environments",
    "CPUS": "environments",
    "DEFAULT_CPU": "environments",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

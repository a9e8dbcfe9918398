"""Optional heavy dependencies, imported only by the functions that need them."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from mnist_edge.errors import MissingDependencyError

# module -> (what it is, the extra that installs it)
EXTRAS = {
    "tensorflow": ("TensorFlow", "train"),
    "keras": ("Keras", "train"),
    "tf2onnx": ("tf2onnx", "train"),
    "onnx": ("onnx", "train"),
    "matplotlib": ("matplotlib", "report"),
    "tflite_micro": ("TensorFlow Lite Micro (tflite-micro, x86-64 Linux wheels only)", "micro"),
    "optuna": ("Optuna", "search"),
}


def require(module: str) -> ModuleType:
    """Import an optional dependency or raise a one-line error naming the extra to install."""
    if module in ("tensorflow", "keras", "tf2onnx"):
        # TensorFlow's C++ start-up chatter (oneDNN notices, CUDA probing) is noise for a CLI.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what, extra = EXTRAS.get(module.split(".")[0], (module, "train"))
        raise MissingDependencyError(
            f"{what} is not installed ({exc.name or module}): this command needs the "
            f"[{extra}] extra. Install it with: pip install 'mnist-edge[{extra}]' "
            f"(from a clone: pip install -e '.[{extra}]')"
        ) from None

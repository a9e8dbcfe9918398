"""C sources for devices: the model and the golden vectors as C arrays, for the bundle and the
firmware projects alike (one emitter, one set of templates).

The files are templates (`templates/*.h`, `*.cc`) filled with string.Template; only the arrays'
bodies are written here.
"""

from __future__ import annotations

import numpy as np

from mnist_edge import __version__
from mnist_edge.files import sha256_bytes
from mnist_edge.templates import FileTemplate
from mnist_edge.templates import template as package_template

C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "float32": "float"}
ARENA_NOTE = (
    "Smallest arena in which TFLM allocated and ran this model (measured by bisection on a\n"
    "// 64-bit host with the reference kernels), rounded up to a multiple of 16."
)


def template(name: str, package: str = __package__) -> FileTemplate:
    """A template file of a package (by default the device layer's own): templates.template."""
    return package_template(package, name)


def c_bytes(data: bytes, indent: str = "    ", per_line: int = 12) -> str:
    """Bytes as the body of a C array initializer, `per_line` hex values a line."""
    lines = []
    for start in range(0, len(data), per_line):
        chunk = data[start : start + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def c_rows(rows: np.ndarray, per_line: int) -> str:
    """A 2-D array as the body of a C initializer of arrays, one `{...}` per row."""
    return "\n".join(f"    {{\n{c_values(row, ' ' * 8, per_line)}\n    }}," for row in rows)


def c_values(values: np.ndarray, indent: str = "    ", per_line: int = 14) -> str:
    """Numbers (integers, or floats as `1.5f`) as the body of a C array initializer."""
    flat = values.reshape(-1)
    if flat.dtype.kind == "f":
        items = [f"{float(v):.9g}f" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    return "\n".join(
        indent + ", ".join(items[i : i + per_line]) + "," for i in range(0, len(items), per_line)
    )


def _guard(c_name: str, what: str) -> str:
    return f"MNIST_EDGE_{c_name.upper()}_{what}_H_"


def model_data_files(
    data: bytes,
    source: str,
    c_name: str,
    arena_bytes: int,
    arena_note: str = ARENA_NOTE,
    command: str = "mnist-edge bundle",
) -> tuple[str, str]:
    """model_data.h and model_data.cc: the flatbuffer as a C array, and the arena declaration."""
    fields = {
        "command": command,
        "source": source,
        "version": __version__,
        "guard": _guard(c_name, "MODEL_DATA"),
        "c_name": c_name,
        "arena_note": arena_note,
        "arena_bytes": arena_bytes,
        "size": f"{len(data):,}",
        "sha256": sha256_bytes(data),
        "bytes": c_bytes(data),
        "length": len(data),
    }
    return template("model_data.h").substitute(fields), template("model_data.cc").substitute(fields)


def golden_data_files(
    inputs: np.ndarray,
    outputs: np.ndarray,
    labels: np.ndarray,
    c_name: str,
    source: str,
    described: str | None = None,
) -> tuple[str, str]:
    """golden_data.h and golden_data.cc: TFLM's inputs and outputs for a firmware unit test.
    `described`: what the inputs are (default: the first N MNIST test images)."""
    rows_in = ",\n".join(f"    {{\n{c_values(x, ' ' * 8)}\n    }}" for x in inputs)
    rows_out = ",\n".join(f"    {{{c_values(y, '').strip().rstrip(',')}}}" for y in outputs)
    fields = {
        "command": "mnist-edge bundle",
        "source": source,
        "version": __version__,
        "guard": _guard(c_name, "GOLDEN_DATA"),
        "c_name": c_name,
        "count": len(inputs),
        "described": described or f"the first {len(inputs)} MNIST test images",
        "layout": "×".join(map(str, inputs.shape[1:])),
        "input_size": int(np.prod(inputs.shape[1:])),
        "output_size": outputs.shape[1],
        "in_type": C_TYPES[inputs.dtype.name],
        "out_type": C_TYPES[outputs.dtype.name],
        "inputs": rows_in,
        "outputs": rows_out,
        "labels": ", ".join(str(int(v)) for v in labels),
    }
    return (
        template("golden_data.h").substitute(fields),
        template("golden_data.cc").substitute(fields),
    )

"""device.csource and bundle.golden: the C arrays a firmware build compiles (no model needed)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from mnist_edge.bundle.golden import golden_vectors
from mnist_edge.device.csource import c_values, golden_data_files, model_data_files

C_NAME = "tiny_model"
WRITEBACK = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "golden_data.h"

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  // TFLM reads tensor data in place: the array and the arena must be 16-byte aligned.
  if (reinterpret_cast<uintptr_t>(NAME) % 16 || reinterpret_cast<uintptr_t>(tensor_arena) % 16)
    return 3;
  FILE* model = std::fopen(argv[1], "wb");
  std::fwrite(NAME, 1, NAME_len, model);
  std::fclose(model);
  FILE* golden = std::fopen(argv[2], "wb");
  std::fwrite(NAME_golden_inputs, 1, sizeof(NAME_golden_inputs), golden);
  std::fwrite(NAME_golden_outputs, 1, sizeof(NAME_golden_outputs), golden);
  std::fwrite(NAME_golden_labels, 1, sizeof(NAME_golden_labels), golden);
  std::fclose(golden);
  std::printf("%u %d\n", kTensorArenaSize, NAME_golden_count);
  return 0;
}
"""


def test_the_arrays_compile_and_give_back_the_exact_bytes(tmp_path):
    """gcc (-Wall -Wextra -Werror) builds the files with a program that writes them back out."""
    gcc = shutil.which("g++") or shutil.which("gcc")
    if gcc is None:
        pytest.skip("no C++ compiler here")
    rng = np.random.default_rng(0)
    model = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()  # not a multiple of 12
    inputs = rng.integers(-128, 128, (3, 28, 28, 1), dtype=np.int8)
    outputs = rng.integers(-128, 128, (5, 10), dtype=np.int8)
    vectors = golden_vectors(inputs, outputs, np.array([7, 2, 1, 0, 4]), count=3)
    files = {}
    files["model_data.h"], files["model_data.cc"] = model_data_files(
        model, "m.tflite", C_NAME, 4096
    )
    files["golden_data.h"], files["golden_data.cc"] = golden_data_files(
        vectors.inputs, vectors.outputs, vectors.labels, C_NAME, "m.tflite"
    )
    for name, text in files.items():
        assert "$" not in text and text.startswith("// "), name  # every template field filled
        (tmp_path / name).write_text(text)
    (tmp_path / "main.cc").write_text(WRITEBACK.replace("NAME", C_NAME))
    program = tmp_path / "writeback"
    sources = [tmp_path / n for n in ("main.cc", "model_data.cc", "golden_data.cc")]
    subprocess.run(
        [gcc, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{tmp_path}", "-o", program]
        + sources,
        check=True,
    )
    done = subprocess.run(
        [program, tmp_path / "model.bin", tmp_path / "golden.bin"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "model.bin").read_bytes() == model
    expected = inputs[:3].tobytes() + outputs[:3].tobytes() + bytes([7, 2, 1])
    assert (tmp_path / "golden.bin").read_bytes() == expected
    assert done.stdout.split() == ["4096", "3"]


def test_golden_npz_holds_the_three_arrays():
    vectors = golden_vectors(np.zeros((4, 2), np.int8), np.ones((4, 10), np.int8), np.arange(4), 2)
    import io

    with np.load(io.BytesIO(vectors.npz_bytes())) as npz:
        assert npz["inputs"].shape == (2, 2) and npz["outputs"].shape == (2, 10)
        assert npz["labels"].tolist() == [0, 1] and npz["labels"].dtype == np.uint8
    assert vectors.summary()["inputs"] == "int8 [2, 2]"


def test_float_values_are_c_float_literals():
    assert c_values(np.array([0.5, 1e-9], np.float32), "") == "0.5f, 9.99999972e-10f,"

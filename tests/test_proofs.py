"""proofs: a bundle run where it ships, for real: Debian's arm64 Python 3.11 with the base install
under qemu-aarch64 (real packages, real wheels), and tflite-runtime 2.14 in its own venv.

Measured on the quick test model (seed 0, 10,000 images, 2 epochs), emulated as a Raspberry Pi 4
(cortex-a72), first 1,000 test images: litert-ref on aarch64 (LiteRT's NEON builtin kernels)
bit-identical to host TFLM on 922 (up to 7 int8 steps apart; the first CONV_2D already rounds
1 step otherwise), golden vectors 8 of 10; XNNPACK on aarch64 equal to XNNPACK on x86-64 on 994
(1 step at most); the int8 ONNX on onnxruntime equal to x86-64's on 1,000 of 1,000; accuracy the
same as host TFLM's. tflite-runtime 2.14 (x86-64): equal to host litert-ref on 10,000 of 10,000
(int8 and float32), golden 10 of 10; the dynamic-range export refused (FULLY_CONNECTED v12).
The model `make demo` trains (fast recipe), all 10,000 images: litert-ref on aarch64 equal to
TFLM on 9,740 (18 steps at most, one class differs), XNNPACK aarch64 = x86-64 on 9,903 (1 step),
golden 10 of 10 on both; the same with a Pi 5's cortex-a76.
The environments are made in the tests' cache (.test-cache/cache), reused between runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mnist_edge.artifacts import MANIFEST, MCU_TFLITE
from mnist_edge.bundle.golden import GOLDEN_FILE, golden_vectors
from mnist_edge.errors import MnistEdgeError, ModelError
from mnist_edge.files import cache_dir
from mnist_edge.proofs import Bundle, prepare, prove
from mnist_edge.proofs.environments import DEBIAN_MIRROR_ENV, MARKER
from mnist_edge.proofs.legacy_env import (
    _python_version,
    find_legacy_python,
    prepare_tflite_runtime,
)
from mnist_edge.proofs.run import model_inputs, read_bundle
from mnist_edge.records import Proof, from_dict
from mnist_edge.runtimes import open_runner
from tests.helpers import assert_ran, need_module, run_command

pytestmark = pytest.mark.proof

N_EMULATED = 300  # test images under emulation: about 12-15 ms each per model and runtime here
N_NATIVE = 1_000
GOLDEN = 10
UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port: refused at once
PROVE_WALL_SECONDS: dict[str, float] = {}  # prove()'s wall time in the fixtures, by platform

# Skipped where a program is missing, failed instead where $CI is set (conftest.py).
needs_qemu = pytest.mark.needs_tools(("qemu-aarch64-static", "qemu-aarch64"), "apt-get", "dpkg-deb")
# tflite-runtime 2.14 has wheels up to Python 3.11: this interpreter, or python3.11 on PATH.
needs_old_python = pytest.mark.needs_tools(*(["python3.11"] if sys.version_info >= (3, 12) else []))


def _leftovers(cache: Path, keep: Path | None = None) -> list[str]:
    """What a failed preparation left in a cache: files other than lock files, and staging."""
    if not cache.exists():
        return []
    found = []
    for path in cache.rglob("*"):
        if keep is not None and (path == keep or keep in path.parents):
            continue
        if path.name.endswith(".tmp") or (path.is_file() and not path.name.endswith(".lock")):
            found.append(str(path.relative_to(cache)))
    return sorted(found)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


@pytest.fixture(scope="module")
def models(exported_all) -> Path:
    """The quick model in every format (model_int8_mcu, model_int8.onnx, model_dynamic...)."""
    return exported_all[0]


@pytest.fixture(scope="module")
def proof_bundle(models, mnist, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A minimal bundle (its model, a manifest naming it, golden.npz from host TFLM), and host
    TFLM's outputs on the first N_NATIVE test images."""
    need_module("tflite_micro", "micro")
    folder = tmp_path_factory.mktemp("proof") / "bundle"
    folder.mkdir()
    model = shutil.copy(models / MCU_TFLITE, folder / MCU_TFLITE)
    tflm = open_runner(model, "tflm")
    inputs = model_inputs(tflm, mnist.x_test[:N_NATIVE])
    outputs = tflm.predict_raw(inputs)
    vectors = golden_vectors(inputs, outputs, mnist.y_test, GOLDEN)
    (folder / GOLDEN_FILE).write_bytes(vectors.npz_bytes())
    (folder / MANIFEST).write_text(json.dumps({"model": MCU_TFLITE}))
    return folder, outputs


@pytest.fixture(scope="module")
def aarch64_proof(proof_bundle, models, mnist) -> Proof:
    folder, tflm = proof_bundle
    n = N_EMULATED
    started = time.perf_counter()
    proof = prove(
        "linux-aarch64",
        folder,
        mnist.x_test[:n],
        mnist.y_test[:n],
        tflm[:n],
        [models / "model_int8.onnx"],
        predict_images=4,
    )
    PROVE_WALL_SECONDS["linux-aarch64"] = time.perf_counter() - started
    return proof


@pytest.fixture(scope="module")
def tflite_runtime_proof(proof_bundle, models, mnist) -> Proof:
    folder, tflm = proof_bundle
    extras = [models / name for name in ("model_float32.tflite", "model_dynamic.tflite")]
    extras.append(models / "model_int8.onnx")  # not a .tflite: left out, not an error
    # A bundle's pieces before its folder is written, as `bundle()` itself would pass them.
    pieces = read_bundle(folder)
    return prove(
        "tflite-runtime-2.14",
        Bundle(pieces.model, pieces.golden_inputs, pieces.golden_outputs, pieces.golden_labels),
        mnist.x_test[:N_NATIVE],
        mnist.y_test[:N_NATIVE],
        tflm,
        extras,
    )


# ----------------------------------------------------------------------------- linux-aarch64


@pytest.mark.slow
@needs_qemu
def test_aarch64_proof_runs_the_base_install_in_debian_arm64_python(aarch64_proof, mnist):
    proof = aarch64_proof
    assert proof.target == "linux-aarch64" and proof.emulated and proof.ok
    assert proof.platform.startswith("linux-aarch64, emulated: qemu-aarch64 ")
    assert proof.cpu == "cortex-a72" and "asimd" in proof.cpu_features
    assert "asimddp" not in proof.cpu_features  # a Pi 4's core has no dot product
    assert proof.python.startswith("3.11.")  # Debian 12's, as Raspberry Pi OS bookworm ships
    for package in ("mnist-edge", "numpy", "ai-edge-litert", "onnxruntime", "pillow"):
        assert package in proof.packages
    assert "tensorflow" not in proof.packages and "tflite-micro" not in proof.packages
    assert proof.images == N_EMULATED and proof.golden_count == GOLDEN
    assert {(r.model, r.runtime) for r in proof.runs} == {
        (MCU_TFLITE, "litert-ref"),
        (MCU_TFLITE, "litert"),
        ("model_int8.onnx", "onnxruntime"),
    }
    assert all(r.loaded and r.images == N_EMULATED for r in proof.runs)
    assert "NEON" in proof.run(MCU_TFLITE, "litert-ref").kernels
    # Its own timings are parts of the wall time prove() took here (rounded to 0.1 s).
    assert proof.prepare_seconds >= 0 and proof.run_seconds > 0
    assert proof.prepare_seconds + proof.run_seconds <= PROVE_WALL_SECONDS[proof.target] + 0.1
    assert "latency" in proof.note  # emulated seconds are never reported as a latency


@pytest.mark.slow
@needs_qemu
def test_aarch64_figures_answer_both_questions(aarch64_proof, proof_bundle, mnist):
    """litert-ref on aarch64 against TFLM, XNNPACK on aarch64 against XNNPACK on x86-64."""
    _, tflm = proof_bundle
    n = N_EMULATED
    host_accuracy = float(np.mean(tflm[:n].argmax(axis=1) == mnist.y_test[:n]))
    for run in aarch64_proof.runs:
        assert abs(run.accuracy - host_accuracy) <= 0.01, run
        assert run.vs_host is not None and run.vs_host.images == n
    ref = aarch64_proof.run(MCU_TFLITE, "litert-ref")
    xnnpack = aarch64_proof.run(MCU_TFLITE, "litert")
    # Measured: litert-ref's NEON kernels reproduce 8 of the 10 golden vectors (922 of 1,000
    # test images bit-identical to TFLM); fewer than 7 would be a new rounding difference.
    assert ref.golden_identical >= GOLDEN - 3
    for run in (ref, xnnpack):
        c = run.vs_host_tflm
        # The golden images are the first GOLDEN test images, which the run compared too: what
        # differs among them differs there as well, by no more.
        assert run.golden_count == GOLDEN
        assert GOLDEN - run.golden_identical <= n - c.bit_identical
        assert run.golden_max_abs_diff <= c.max_abs_diff
        assert (run.golden_identical == GOLDEN) == (run.golden_max_abs_diff == 0)
        assert c.against.startswith("host tflm") and c.units == "int8 steps"
        # Measured: 922 of 1,000 bit-identical to TFLM, at most 7 steps apart, 999 same class.
        assert c.same_class >= 0.98 * n and c.max_abs_diff <= 16
    # XNNPACK's Arm paths against its x86 ones: measured 994 of 1,000 equal, 1 step at most.
    assert xnnpack.vs_host.against.startswith("host litert")
    assert xnnpack.vs_host.bit_identical >= 0.95 * n and xnnpack.vs_host.max_abs_diff <= 2
    onnx = aarch64_proof.run("model_int8.onnx", "onnxruntime")
    assert onnx.golden_count is None and onnx.vs_host_tflm is None
    assert onnx.vs_host.units == "probability" and onnx.vs_host.same_class == n
    assert onnx.vs_host.max_abs_diff <= 1e-3  # measured: equal to the last bit
    findings = aarch64_proof.findings()
    assert any("litert-ref (linux-aarch64): golden" in line for line in findings)


@pytest.mark.slow
@needs_qemu
def test_aarch64_predict_command_classifies_pngs_like_the_host(aarch64_proof, mnist):
    check = aarch64_proof.predict
    assert check is not None and check.exit_code == 0 and check.error is None
    assert check.model == MCU_TFLITE and check.runtime == "litert"
    assert len(check.files) == 4 and check.labels == [int(v) for v in mnist.y_test[:4]]
    assert check.classes == check.host_classes and check.matches_host
    assert check.matches_arrays >= 3  # the PNG goes through predict's MNIST preprocessing


@pytest.mark.slow
@needs_qemu
def test_aarch64_environment_lives_in_the_cache_and_is_reused(aarch64_proof):
    layers = {name: Path(path) for name, path in aarch64_proof.environment.items()}
    assert set(layers) == {"sysroot", "mnist-edge", "site"}
    for path in layers.values():
        assert cache_dir() in path.parents and (path / MARKER).is_file()
    assert (layers["sysroot"] / "root" / "usr" / "bin" / "python3.11").is_file()
    assert not list(layers["sysroot"].parent.glob("*.tmp"))
    started = time.perf_counter()
    again = prepare("linux-aarch64")
    assert again.built == () and again.layers == aarch64_proof.environment
    assert time.perf_counter() - started < 10


@pytest.mark.slow
@needs_qemu
def test_the_device_install_has_every_file_of_the_package(aarch64_proof):
    assert aarch64_proof.warnings == []


@pytest.mark.slow
@needs_qemu
def test_proof_is_json_and_reads_back_typed(aarch64_proof):
    payload = json.loads(json.dumps(dataclasses.asdict(aarch64_proof)))
    assert from_dict(Proof, payload) == aarch64_proof
    assert payload["runs"][0]["vs_host_tflm"]["units"] == "int8 steps"


# ----------------------------------------------------------------------------- tflite-runtime


@pytest.mark.slow
@needs_old_python
def test_tflite_runtime_proof_loads_float32_and_int8_and_refuses_dynamic_range(
    tflite_runtime_proof,
):
    proof = tflite_runtime_proof
    assert proof.ok and not proof.emulated and proof.predict is None
    assert proof.platform == f"linux-{platform.machine()}"
    assert proof.packages["tflite-runtime"] == "2.14.0"
    assert proof.packages["numpy"].startswith("1.") and proof.python.startswith("3.")
    assert [r.model for r in proof.runs] == [
        MCU_TFLITE,
        "model_float32.tflite",
        "model_dynamic.tflite",
    ]
    int8, float32, dynamic = proof.runs
    # Its builtin kernels are LiteRT's x86 ones: measured equal on 10,000 of 10,000.
    assert int8.golden_identical == int8.golden_count == GOLDEN
    assert int8.vs_host.bit_identical == N_NATIVE and int8.vs_host.against.startswith(
        "host litert-ref"
    )
    assert int8.vs_host_tflm.same_class == N_NATIVE
    assert float32.loaded and float32.golden_count is None
    assert float32.vs_host.bit_identical == N_NATIVE and float32.vs_host.units == "probability"
    assert not dynamic.loaded and dynamic.images == 0
    assert "FULLY_CONNECTED" in dynamic.error and "12" in dynamic.error
    assert Path(proof.environment["venv"]) == cache_dir() / "venv-tflite-runtime-2.14"


@pytest.mark.slow
@needs_old_python
def test_bundle_prove_tflite_runtime_as_a_process(exported_copy):
    """`mnist-edge bundle --prove tflite-runtime-2.14`, the installed script as a real process:
    its table on stdout, the proof in the manifest."""
    done = run_command(
        "bundle", "-a", exported_copy, "--prove", "tflite-runtime-2.14", "--prove-images", "200"
    )
    assert_ran(done)
    text = " ".join(done.stdout.split())  # the table's cells, rewrapped lines joined
    assert "Bundle" in text and "proof tflite-runtime-2.14" in text
    # Its builtin kernels are LiteRT's x86 ones: the golden vectors reproduced bit for bit.
    assert (
        f"{MCU_TFLITE} on tflite-runtime (tflite-runtime-2.14): golden {GOLDEN}/{GOLDEN} "
        "identical (max |Δ| 0)"
    ) in text
    manifest = json.loads((exported_copy / "bundle" / MANIFEST).read_text())
    (proof,) = manifest["proven"]
    assert proof["target"] == "tflite-runtime-2.14" and proof["images"] == 200
    assert proof["packages"]["tflite-runtime"] == "2.14.0" and proof["failures"] == []


# ----------------------------------------------------------------------------- bad inputs


def test_unknown_platform_and_missing_bundle_are_one_line(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    labels, outputs = np.zeros(2, np.uint8), np.zeros((2, 10), np.int8)
    with pytest.raises(MnistEdgeError, match="Unknown proof platform 'linux-riscv64'") as exc:
        prove("linux-riscv64", tmp_path, images, labels, outputs)
    _one_line(exc)
    with pytest.raises(MnistEdgeError, match="not a bundle") as exc:
        prove("linux-aarch64", tmp_path / "nowhere", images, labels, outputs)
    _one_line(exc)
    (tmp_path / MANIFEST).write_text(json.dumps({"model": MCU_TFLITE}))
    with pytest.raises(ModelError, match="the bundle's model is missing") as exc:
        read_bundle(tmp_path)
    _one_line(exc)


@pytest.mark.slow
def test_bad_arrays_and_a_bad_extra_model_stop_before_any_preparation(
    proof_bundle, mnist, tmp_path, monkeypatch
):
    folder, tflm = proof_bundle
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    x, y = mnist.x_test[:5], mnist.y_test[:5]
    with pytest.raises(MnistEdgeError, match="uint8") as exc:
        prove("linux-aarch64", folder, x.astype(np.float32), y, tflm[:5])
    _one_line(exc)
    with pytest.raises(MnistEdgeError, match="host TFLM outputs") as exc:
        prove("linux-aarch64", folder, x, y, tflm[:4])
    _one_line(exc)
    truncated = tmp_path / "model_int8.tflite"
    truncated.write_bytes((folder / MCU_TFLITE).read_bytes()[:5000])
    with pytest.raises(ModelError, match="model_int8.tflite") as exc:
        prove("linux-aarch64", folder, x, y, tflm[:5], [truncated])
    _one_line(exc)
    assert not cache.exists()


@pytest.mark.slow
def test_missing_qemu_is_one_line_naming_the_package(proof_bundle, mnist, tmp_path, monkeypatch):
    folder, tflm = proof_bundle
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    monkeypatch.setenv("PATH", "")
    with pytest.raises(MnistEdgeError, match=r"qemu-user-static \(apt-get install") as exc:
        prove("linux-aarch64", folder, mnist.x_test[:3], mnist.y_test[:3], tflm[:3])
    _one_line(exc)
    assert not cache.exists()


@needs_qemu
def test_unreachable_debian_mirror_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    monkeypatch.setenv(DEBIAN_MIRROR_ENV, f"{UNREACHABLE}/debian")
    with pytest.raises(
        MnistEdgeError, match=rf"Cannot download .*\({DEBIAN_MIRROR_ENV}=URL\)"
    ) as exc:
        prepare("linux-aarch64")
    assert "127.0.0.1" in _one_line(exc)
    assert _leftovers(cache) == []


def _unreachable_pip(monkeypatch) -> None:
    """pip with no index but a dead one: no config file, no local wheel folders, no retries."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"{UNREACHABLE}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "5")
    for variable in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.slow
@needs_qemu
def test_unreachable_pip_index_for_the_base_install_leaves_no_layer(
    aarch64_proof, tmp_path, monkeypatch
):
    # The Debian layer as the tests' cache has it (copied, to reach the pip steps quickly).
    sysroot = Path(aarch64_proof.environment["sysroot"])
    cache = tmp_path / "cache"
    copy = cache / "proofs" / "linux-aarch64" / sysroot.name
    shutil.copytree(sysroot, copy, symlinks=True)
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    _unreachable_pip(monkeypatch)
    with pytest.raises(MnistEdgeError, match=r"pip could not .* PIP_INDEX_URL") as exc:
        prepare("linux-aarch64")
    _one_line(exc)
    assert _leftovers(cache, keep=copy) == []
    assert sorted(p.name for p in copy.parent.iterdir()) == [".lock", sysroot.name]


@pytest.mark.slow
@needs_old_python
def test_unreachable_pip_index_for_tflite_runtime_leaves_no_venv(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    _unreachable_pip(monkeypatch)
    with pytest.raises(MnistEdgeError, match=r"pip could not install tflite-runtime==2\.14\.0"):
        prepare_tflite_runtime()
    assert _leftovers(cache) == []
    assert not (cache / "venv-tflite-runtime-2.14").exists()


def test_no_python_for_tflite_runtime_is_one_line(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_EDGE_CACHE", str(cache))
    not_python = tmp_path / "python3.11"
    not_python.write_text("not a program\n")
    with pytest.raises(MnistEdgeError, match="not a Python; tflite-runtime 2.14 needs") as exc:
        prepare_tflite_runtime(base_python=not_python)
    _one_line(exc)
    # A real newer Python, where one is installed (pyenv's shims may name one that is not).
    for name in ("python3.12", "python3.13", "python3.14"):
        newer = shutil.which(name)
        if newer and _python_version(newer):
            with pytest.raises(MnistEdgeError, match=r"Python 3\.1\d; .* 3\.8 to 3\.11"):
                find_legacy_python(newer)
    assert not cache.exists()

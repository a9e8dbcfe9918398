"""No TensorFlow on a device: not at import, not in the device commands, not in the base install.

Polygraphy's tests/mod/test_dependencies.py does the same for its tools: launch each in a real
subprocess, then look at what it imported; and install the package bare to see what it needs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image

from mnist_edge.cli import app
from mnist_edge.predict import predict

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx")
# At run time a device command may use onnx where it is installed (bench counts an ONNX model's
# MACs with it); TensorFlow it never loads.
RUNTIME_HEAVY = ("tensorflow", "keras", "tf2onnx")
COMMANDS = sorted(typer.main.get_command(app).commands)  # every command's --help, as it grows
PROJECT = Path(__file__).resolve().parents[1]
# The runtimes a device venv gets pinned to: the versions here, so that numbers can be equal.
RUNTIME_DISTRIBUTIONS = ("numpy", "ai-edge-litert", "onnxruntime", "pillow")
# Runs the CLI in this interpreter, then reports which heavy modules the run left imported.
PROBE = textwrap.dedent(
    """
    import sys
    from mnist_edge.cli import app
    try:
        app(sys.argv[1:], prog_name="mnist-edge")
        code = 0
    except SystemExit as exc:
        code = exc.code
    heavy = [name for name in {heavy!r} if name in sys.modules]
    print("HEAVY_MODULES=" + ",".join(heavy), file=sys.stderr)
    sys.exit(code)
    """
).format(heavy=RUNTIME_HEAVY)
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import mnist_edge
    for module in pkgutil.iter_modules(mnist_edge.__path__):
        if module.name != "__main__":  # that one runs the CLI
            importlib.import_module("mnist_edge." + module.name)
    print(",".join(name for name in {heavy!r} if name in sys.modules))
    """
).format(heavy=HEAVY)


def run(argv: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """A real subprocess, its output captured as text."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def probe(*args, cwd: Path) -> subprocess.CompletedProcess:
    """Run `mnist-edge ARGS` in a fresh interpreter; assert it imported no framework."""
    done = run([sys.executable, "-c", PROBE, *args], cwd=cwd)
    lines = [line for line in done.stderr.splitlines() if line.startswith("HEAVY_MODULES=")]
    assert lines, done.stderr[-2000:]
    assert lines[-1] == "HEAVY_MODULES=", f"mnist-edge {' '.join(map(str, args))}: {lines[-1]}"
    return done


def test_importing_every_module_pulls_in_no_framework(tmp_path):
    done = run([sys.executable, "-c", IMPORT_ALL], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], *([name, "--help"] for name in COMMANDS)],
    ids=["help", "version", *COMMANDS],
)
def test_help_imports_no_framework(tmp_path, args):
    done = probe(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def device_inputs(tmp_path_factory, exported, mnist) -> dict[str, Path]:
    """A private copy of the exported artifacts, and what a user would classify with them."""
    root = tmp_path_factory.mktemp("device_inputs")
    artifacts = root / "artifacts"
    shutil.copytree(exported[0], artifacts)
    pngs = root / "pngs"
    pngs.mkdir()
    for i, image in enumerate(mnist.x_test[:10]):
        Image.fromarray(image).save(pngs / f"{i}.png")
        Image.fromarray(255 - image).save(pngs / f"{i}_inverted.png")
    np.save(root / "digits.npy", mnist.x_test[10:30])
    stale = root / "stale"  # no reference.npz: verify would have to run Keras
    shutil.copytree(artifacts, stale)
    (stale / "reference.npz").unlink()
    return {"artifacts": artifacts, "pngs": pngs, "npy": root / "digits.npy", "stale": stale}


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["verify", "-a", "{artifacts}", "--limit", "2000", "--json"],
        ["bench", "-a", "{artifacts}", "--runs", "20", "--warmup", "2"],
        ["predict", "{pngs}", "--model", "{artifacts}/model_int8.tflite"],
        ["predict", "{pngs}", "{npy}", "--model", "{artifacts}/model.onnx", "--json"],
    ],
    ids=["verify", "bench", "predict-tflite", "predict-onnx"],
)
def test_device_commands_import_no_framework(tmp_path, device_inputs, args):
    done = probe(*(a.format(**device_inputs) for a in args), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    if args[0] == "verify":
        assert json.loads(done.stdout)["reference"]["source"] == "recorded"


# --- a second venv with the base install only, as on a device ---


@pytest.fixture(scope="module")
def device_bin(tmp_path_factory) -> Iterator[Path]:
    """bin/ of a fresh venv holding `pip install PROJECT` without extras (about 20 s)."""
    root = tmp_path_factory.mktemp("device_venv")
    # A copy, so the build's build/ and egg-info never land in (or race in) the work tree.
    source = root / "source"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(
            ".*", "artifacts", "build", "dist", "*.egg-info", "__pycache__", "tests", "benchmarks"
        ),
    )
    constraints = root / "constraints.txt"
    constraints.write_text(
        "".join(f"{name}=={metadata.version(name)}\n" for name in RUNTIME_DISTRIBUTIONS)
    )
    venv = root / "venv"
    done = run([sys.executable, "-m", "venv", venv], cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "-c", constraints, source],
        cwd=root,
        timeout=900,
    )
    assert done.returncode == 0, f"pip install of the base package failed:\n{done.stderr[-3000:]}"
    yield venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)  # 290 MB; pytest keeps three runs' tmp folders


@pytest.mark.slow
def test_base_install_has_no_framework(device_bin, tmp_path):
    done = run(
        [
            device_bin / "python",
            "-c",
            "import importlib.util as u; "
            f"print(','.join(m for m in {(*HEAVY, 'tflite_micro')!r} if u.find_spec(m)))",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
    done = run([device_bin / "mnist-edge", "--help"], cwd=tmp_path)
    assert done.returncode == 0 and "predict" in done.stdout


@pytest.mark.slow
def test_device_verify_gives_the_full_installs_numbers(device_bin, device_inputs, tmp_path):
    artifacts = device_inputs["artifacts"]
    device = run([device_bin / "mnist-edge", "verify", "-a", artifacts, "--json"], cwd=tmp_path)
    assert device.returncode == 0, device.stderr[-2000:]
    full = run([sys.executable, "-m", "mnist_edge", "verify", "-a", artifacts, "--json"], tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    device_report, full_report = json.loads(device.stdout), json.loads(full.stdout)
    assert device_report["reference"]["source"] == "recorded"
    assert device_report["images"] == 10000
    assert device_report["reference"] == full_report["reference"]
    assert device_report["results"] == full_report["results"]  # every figure, to the last bit


@pytest.mark.slow
def test_device_bench_and_predict_work(device_bin, device_inputs, tmp_path):
    artifacts = device_inputs["artifacts"]
    bench = run(
        [device_bin / "mnist-edge", "bench", "-a", artifacts, "--runs", "50", "--json"], tmp_path
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    record = json.loads(bench.stdout)
    rows = record["results"]
    exports = sorted(p.name for p in artifacts.iterdir() if p.suffix in (".tflite", ".onnx"))
    assert sorted({r["artifact"] for r in rows}) == exports
    assert {r["batch_size"] for r in rows} == {1, 64}
    assert all(r["runs"] == 50 and r["p50_us"] > 0 for r in rows)
    # The roofline needs no onnx package; a .tflite's MACs come from the flatbuffer.
    assert record["rooflines"][0]["int8_gmacs"] > 0
    assert all(r["macs"] == 2_794_240 for r in rows if r["artifact"].endswith(".tflite"))

    model = artifacts / "model_int8.tflite"
    inputs = [device_inputs["pngs"], device_inputs["npy"]]
    done = run([device_bin / "mnist-edge", "predict", *inputs, "-m", model, "--json"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = predict(inputs, model=model)  # the same inputs, in this (full) environment
    assert json.loads(done.stdout)["predictions"] == [asdict(p) for p in expected.predictions]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["train", "-a", "{tmp}/new", "--epochs", "1"],
        ["export", "-a", "{artifacts}", "--overwrite"],
        ["verify", "-a", "{stale}"],
        ["predict", "{pngs}", "--model", "{artifacts}/model.keras"],
    ],
    ids=["train", "export", "verify-without-reference", "predict-keras"],
)
def test_commands_needing_tensorflow_name_the_extra_and_exit_2(
    device_bin, device_inputs, tmp_path, args
):
    argv = [a.format(tmp=tmp_path, **device_inputs) for a in args]
    done = run([device_bin / "mnist-edge", *argv], cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs the [train] extra" in done.stderr
    assert "pip install 'mnist-edge[train]'" in done.stderr
    assert "Traceback" not in done.stderr

"""npu: vela's Ethos-U estimates, every operator accounted for, labelled as estimates; and
`bench --target ethos-u*`, which shows them beside the Cortex-M55 firmware's measurements."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_edge.artifacts import record_payload
from mnist_edge.bench import bench
from mnist_edge.cli import app
from mnist_edge.errors import MissingDependencyError, MnistEdgeError, ModelError
from mnist_edge.files import sha256_file
from mnist_edge.model_info import read_tflite
from mnist_edge.npu import VELA_DISTRIBUTION, compile_for_npu, estimate_npu, vela_version
from mnist_edge.options import NPU_BASIS, NPU_TARGETS
from mnist_edge.records import EngineFlash, EngineRam, FirmwareReport, FirmwareResult
from tests.helpers import assert_exit, need_module


@pytest.fixture()
def vela():
    """Arm's vela, for the tests that run it: skipped where the [npu] extra is missing, failed
    under $CI."""
    return need_module("ethosu.vela", "npu")


needs_vela = pytest.mark.usefixtures("vela")
U55 = [name for name in NPU_TARGETS if name.startswith("ethos-u55-")]


@pytest.fixture()
def npu_copy(tmp_path: Path, exported) -> Path:
    """The MCU-lean int8 and the float32 export, alone in a private artifacts folder."""
    source, _ = exported
    target = tmp_path / "artifacts"
    target.mkdir()
    for name in ("model_int8_mcu.tflite", "model_float32.tflite", "model.onnx"):
        shutil.copy(source / name, target / name)
    return target


@pytest.fixture()
def without_vela(monkeypatch):
    """This process as where the [npu] extra is not installed: no ethos-u-vela distribution,
    no ethosu module (whether or not vela is really installed here)."""
    from importlib import metadata

    installed = metadata.version

    def version(name: str) -> str:
        if name == VELA_DISTRIBUTION:
            raise metadata.PackageNotFoundError(name)
        return installed(name)

    monkeypatch.setattr(metadata, "version", version)
    for name in [m for m in sys.modules if m.split(".")[0] == "ethosu"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ethosu", None)  # `import ethosu` raises ImportError


def test_missing_vela_names_the_npu_extra(without_vela, npu_copy):
    with pytest.raises(ImportError):
        import ethosu.vela  # noqa: F401
    with pytest.raises(MissingDependencyError, match=r"pip install 'mnist-edge\[npu\]'"):
        vela_version()
    # Refused before vela is run: one error naming the extra, not vela's traceback.
    with pytest.raises(MissingDependencyError, match=r"ethos-u-vela\) is not installed"):
        compile_for_npu(npu_copy / "model_int8_mcu.tflite", "ethos-u55-128")
    result = CliRunner().invoke(app, ["bench", "-t", "ethos-u55-128", "-a", str(npu_copy)])
    assert_exit(result, 2)
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "pip install 'mnist-edge[npu]'" in error and "Traceback" not in result.stderr


@needs_vela
def test_estimate_accounts_for_every_operator(npu_copy):
    model = npu_copy / "model_int8_mcu.tflite"
    compiled = compile_for_npu(model, "ethos-u55-128")
    e = compiled.estimate
    _, info = read_tflite(model)
    assert e.model_operators == len(info.operators)
    assert e.npu_operators + len(e.cpu_operators) == e.model_operators
    assert e.fully_mapped and e.npu_operators == e.model_operators
    assert e.vela_npu_operations >= e.npu_operators  # vela lowers (a softmax is several)
    assert e.cycles_total >= e.cycles_npu > 0
    assert e.sram_bytes > 0 and e.off_chip_flash_bytes > 0 and e.dram_bytes == 0
    assert e.inference_us == pytest.approx(e.cycles_total / e.clock_hz * 1e6, rel=1e-3)
    assert e.macs > 0 and e.basis == NPU_BASIS == "estimate (vela)"
    assert (e.accelerator, e.system_config, e.memory_mode) == (
        "ethos-u55-128",
        *NPU_TARGETS["ethos-u55-128"],
    )
    assert e.model_sha256 == sha256_file(model) and e.vela_version == vela_version()
    assert e.compiled_bytes == len(compiled.model)
    assert compiled.file_name == "model_int8_mcu_vela.tflite"
    # The compiled model is one ethos-u custom operator, and vela compiles the same bytes again.
    assert [op.op for op in read_tflite_bytes(compiled.model).operators] == ["CUSTOM:ethos-u"]
    assert estimate_npu(model, "ethos-u55-128").compiled_sha256 == e.compiled_sha256


def read_tflite_bytes(data: bytes):
    from mnist_edge.model_info import read_model

    return read_model(data, "compiled")


@needs_vela
@pytest.mark.parametrize("accelerator", list(NPU_TARGETS))
def test_every_configuration_maps_the_int8_model(npu_copy, accelerator):
    e = estimate_npu(npu_copy / "model_int8_mcu.tflite", accelerator)
    assert e.fully_mapped and e.cycles_total > 0 and e.sram_bytes > 0
    assert e.off_chip_flash_bytes + e.dram_bytes > 0  # the weights: flash or DRAM, per system


@needs_vela
def test_more_macs_per_cycle_take_fewer_cycles(npu_copy):
    cycles = [estimate_npu(npu_copy / "model_int8_mcu.tflite", a).cycles_total for a in U55]
    assert cycles == sorted(cycles, reverse=True) and len(set(cycles)) == len(cycles)


@needs_vela
def test_float_model_stays_on_the_cpu(npu_copy):
    e = estimate_npu(npu_copy / "model_float32.tflite", "ethos-u55-128")
    _, info = read_tflite(npu_copy / "model_float32.tflite")
    assert e.npu_operators == 0 and not e.fully_mapped
    assert e.cpu_operators == [op.op for op in info.operators]
    assert e.vela_npu_operations == 0 and e.cycles_total == 0


@needs_vela
def test_an_unmappable_operator_is_listed_not_refused(tmp_path):
    tf = need_module("tensorflow", "train")
    import numpy as np

    inputs = tf.keras.Input((8, 8, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    # GATHER has no Ethos-U55 kernel: vela leaves it to the CPU between two NPU parts.
    x = tf.keras.layers.Lambda(lambda t: tf.gather(t, [3, 1, 0, 2], axis=-1))(x)
    outputs = tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: (
        [rng.random((1, 8, 8, 1), dtype=np.float32)] for _ in range(10)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    model = tmp_path / "gather.tflite"
    model.write_bytes(converter.convert())
    e = estimate_npu(model, "ethos-u55-128")
    assert e.cpu_operators == ["GATHER"]
    assert e.npu_operators == e.model_operators - 1 > 0 and e.cycles_npu > 0


@needs_vela
@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("model.onnx", None, r"vela compiles \.tflite models only"),
        ("noise.tflite", b"\x00" * 64, "not a TFLite flatbuffer"),
    ],
)
def test_a_model_vela_cannot_take_is_one_error(npu_copy, name, content, match):
    if content is not None:
        (npu_copy / name).write_bytes(content)
    with pytest.raises(ModelError, match=match):
        estimate_npu(npu_copy / name, "ethos-u55-128")


def test_unknown_accelerator(tmp_path):
    with pytest.raises(MnistEdgeError, match="Invalid accelerator 'ethos-u99'"):
        estimate_npu(tmp_path / "model.tflite", "ethos-u99")


@needs_vela
def test_bench_target_npu_writes_estimates_not_timings(npu_copy):
    report = bench(npu_copy, None, target="ethos-u65-256")
    (e,) = report.npu
    assert report.results == [] and report.target == "ethos-u65-256"
    assert e.artifact == "model_int8_mcu.tflite" and e.basis == NPU_BASIS
    assert report.settings["basis"] == NPU_BASIS and "ethos-u-vela" in report.versions
    record = json.loads((npu_copy / "bench.json").read_text())
    assert record["npu"][0]["cycles_total"] == e.cycles_total and record["results"] == []
    assert "estimate (vela)" in (npu_copy / "bench.csv").read_text()
    assert report.firmware == []  # no firmware run here


def _firmware_result(cpu: str, sha256: str, instructions: int) -> FirmwareResult:
    """A firmware run's result with the figures bench shows, and 1 for every other count."""
    given = {
        "cpu": cpu,
        "board": "mps3-an547",
        "kernels": "cmsis-nn",
        "model": "model_int8_mcu.tflite",
        "model_sha256": sha256,
        "accuracy": 1.0,
        "agreement_with_host_tflm": 1.0,
        "mismatches": (),
        "instructions_per_inference": instructions,
        "instructions_per_mac": None,
        "engine": "tflm",
        "flash": EngineFlash(1, 1, 1),
        "ram": EngineRam(1, 1, 1),
        "arena_measured_on": "device",
        "project": "p",
        "elf": "e",
        "elf_sha256": "0" * 64,
        "build_seconds": 0.0,
        "run_seconds": 0.0,
        "qemu_command": (),
        "ran": True,
    }
    counts = {
        f.name: 1
        for f in fields(FirmwareResult)
        if f.name not in given and f.type in ("int", "int | None")
    }
    return FirmwareResult(**given, **counts)


@needs_vela
def test_bench_target_npu_shows_the_m55_firmware_beside(npu_copy):
    from mnist_edge.render import npu_rows
    from mnist_edge.report import _bench_section

    sha256 = sha256_file(npu_copy / "model_int8_mcu.tflite")
    record = FirmwareReport(
        out=str(npu_copy / "firmware"),
        model="model_int8_mcu.tflite",
        model_sha256=sha256,
        images=1,
        results=(
            _firmware_result("cortex-m55", sha256, 1_234_567),
            _firmware_result("cortex-m4", sha256, 7_654_321),
        ),
        toolchain="gcc",
        qemu=None,
        sources={},
    )
    (npu_copy / "firmware").mkdir()
    (npu_copy / "firmware" / "firmware.json").write_text(json.dumps(record_payload(record)))
    report = bench(npu_copy, None, target="ethos-u55-128")
    (m55,) = report.firmware  # the M55's row only: the CPU an Ethos-U55 sits beside
    assert m55.cpu == "cortex-m55" and m55.instructions_per_inference == 1_234_567
    rows = npu_rows(report)
    assert [row[2] for row in rows] == [NPU_BASIS, "measured (firmware, QEMU)"]
    assert "1,234,567" in rows[1]
    _, html, _ = _bench_section(report, None)
    assert "estimates by Arm's vela compiler, not measurements" in html
    assert "estimate (vela)" in html and "1,234,567" in html


@needs_vela
def test_cli_bench_target_npu_json(npu_copy):
    result = CliRunner().invoke(
        app, ["bench", "--target", "ethos-u55-128", "--json", "-a", str(npu_copy)]
    )
    assert_exit(result, 0)
    payload = json.loads(result.stdout)  # stdout is the JSON alone
    (row,) = payload["npu"]
    assert row["accelerator"] == "ethos-u55-128" and row["basis"] == "estimate (vela)"
    assert row["cpu_operators"] == [] and row["npu_operators"] == row["model_operators"]
    assert row["cycles_total"] > 0 and row["sram_bytes"] > 0 and row["off_chip_flash_bytes"] > 0


@needs_vela
def test_cli_bench_target_npu_table_and_errors(npu_copy):
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "-t", "ethos-u55-128", "-a", str(npu_copy)])
    assert_exit(result, 0)
    assert "estimate (vela)" in result.stdout and "no NPU ran" in result.stdout
    (npu_copy / "noise.tflite").write_bytes(b"\x00" * 64)
    for args, message in [
        (["-m", npu_copy / "noise.tflite"], "not a TFLite flatbuffer"),
        (["-r", "litert"], "Pass --target or --runtime, not both"),
    ]:
        result = runner.invoke(
            app, ["bench", "-t", "ethos-u55-128", "-a", str(npu_copy), *map(str, args)]
        )
        assert_exit(result, 2)
        *progress, error = result.stderr.splitlines()  # progress lines, then one error line
        assert error.startswith("error: ") and message in error
        assert not any("error" in line or "Traceback" in line for line in progress)


def test_bundle_refuses_an_unknown_npu_in_one_line(exported, mnist, tmp_path):
    from mnist_edge.bundle import bundle

    artifacts, _ = exported
    with pytest.raises(MnistEdgeError, match=r"^Unknown NPU ethos-u99: expected one of ethos-u55"):
        bundle(artifacts, mnist, out=tmp_path, npu=["ethos-u99"])

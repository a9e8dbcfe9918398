"""Instructions per layer on the device, for both engines: TFLM's per-operator profile (its
one-image sizing build, a MicroProfilerInterface in main.cc) and the C engine's per-step one
(model.c's step hook), in firmware.json, read back, and in the firmware table.

The build is real (arm-none-eabi-gcc, qemu-system-arm, the pinned sources; TFLM's library from
the tests' cache); the record and table tests need nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mnist_edge.records import FirmwareReport, FirmwareResult, LayerCost, from_dict
from mnist_edge.render import firmware_splits
from tests.helpers import SOURCES_DIR, needs_arm_tools, needs_sources

IMAGES = 3
# The quick model's operators, in TFLM's order, named as main.cc prints them.
TFLM_OPERATORS = [
    "CONV_2D_0",
    "MAX_POOL_2D_1",
    "CONV_2D_2",
    "MAX_POOL_2D_3",
    "CONV_2D_4",
    "RESHAPE_5",
    "FULLY_CONNECTED_6",
    "FULLY_CONNECTED_7",
    "SOFTMAX_8",
]


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory, exported, mnist) -> FirmwareReport:
    from mnist_edge.firmware import firmware

    artifacts, _ = exported
    return firmware(
        artifacts / "model_int8_mcu.tflite",  # the model the C engine compiles
        mnist.x_test[:IMAGES],
        mnist.y_test[:IMAGES],
        cpus=["cortex-m4"],
        kernels=["cmsis-nn"],
        engines=["tflm", "codegen"],
        out=tmp_path_factory.mktemp("firmware-layers"),
        sources=SOURCES_DIR,
    )


@needs_sources
@needs_arm_tools
def test_both_engines_record_their_layers(both_engines):
    assert both_engines.passed
    tflm, codegen = both_engines.results
    assert [layer.name for layer in tflm.layers] == TFLM_OPERATORS
    assert [layer.name for layer in codegen.layers][-3:] == ["fc_6", "fc_7", "softmax_8"]
    for result in (tflm, codegen):
        assert result.layers_image == 0
        total = sum(layer.instructions for layer in result.layers)
        # Everything but the interpreter's (or the harness's) own few hundred instructions.
        assert 0.99 * result.instructions_per_inference < total
        assert total < 1.01 * result.instructions_per_inference
    # The convolutions dominate, in both engines.
    convolutions = sum(x.instructions for x in tflm.layers if x.name.startswith("CONV_2D"))
    assert convolutions > 0.9 * tflm.instructions_per_inference
    record = json.loads((Path(both_engines.out) / "firmware.json").read_text())
    assert record["results"][0]["layers"][0] == dataclasses.asdict(tflm.layers[0])


def _result(**changes) -> FirmwareResult:
    values = {
        f.name: 0
        for f in dataclasses.fields(FirmwareResult)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    values |= {"cpu": "rv32imc", "board": "sifive_e", "kernels": "cmsis-nn", "flash": None}
    values |= {"instructions_per_inference": 1_000, "engine": "codegen", **changes}
    return FirmwareResult(**values)


def test_a_record_without_layers_still_loads():
    data = dataclasses.asdict(_result(layers=[LayerCost("fc_6", 7)], layers_image=0))
    assert from_dict(FirmwareResult, data).layers == [LayerCost("fc_6", 7)]
    del data["layers"], data["layers_image"]
    old = from_dict(FirmwareResult, data)
    assert old.layers == [] and old.layers_image is None


def test_the_table_shows_each_layer():
    layers = [LayerCost("conv_0+maxpool_1", 900), LayerCost("softmax_8", 95)]
    report = FirmwareReport(
        out="",
        model="m.tflite",
        model_sha256="",
        images=1,
        results=(_result(layers=layers, layers_image=4), _result()),
        toolchain="",
        qemu=None,
        sources={},
    )
    (line,) = firmware_splits(report)
    assert line == (
        "rv32imc codegen cmsis-nn instructions per layer (test image 4, profiled): "
        "conv_0+maxpool_1 900, softmax_8 95; together 995 of 1,000 per inference"
    )

"""Instructions per layer in the record and the table: read back from firmware.json (an older
record without them too) and shown one line per configuration. The build that records them,
for both engines, is test_firmware.py's (test_both_engines_record_their_layers)."""

from __future__ import annotations

import dataclasses

from mnist_edge.records import (
    EngineFlash,
    EngineRam,
    FirmwareReport,
    FirmwareResult,
    LayerCost,
    from_dict,
)
from mnist_edge.render import firmware_splits


def _result(**changes) -> FirmwareResult:
    values = {
        f.name: 0
        for f in dataclasses.fields(FirmwareResult)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    values |= {"cpu": "rv32imc", "board": "sifive_e", "kernels": "cmsis-nn"}
    values |= {"flash": EngineFlash(1, 2, 3), "ram": EngineRam(4, 5, 6)}
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
    lines = firmware_splits(report)
    assert lines[0] == (
        "rv32imc codegen cmsis-nn: accuracy 0.0000; ISA limit 0 instructions; arena 0 B (0), "
        "stack 5 B; built in 0 s"
    )
    assert lines[1] == (
        "rv32imc codegen cmsis-nn: flash engine code 1 + constants 2 + harness 3; RAM engine "
        "4 + stack 5 + harness statics 6"
    )
    assert lines[2] == (
        "rv32imc codegen cmsis-nn instructions per layer (test image 4, profiled): "
        "conv_0+maxpool_1 900, softmax_8 95; together 995 of 1,000 per inference"
    )

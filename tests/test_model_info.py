"""model_info: reading a model without running it (operators, kind, MACs, runtimes)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mnist_edge.errors import ModelError
from mnist_edge.model_info import (
    OP_TABLE,
    count_macs,
    count_params,
    min_runtime,
    model_cost,
    model_kind,
    op_min_runtime,
    op_uses,
    read_model,
    tensor_spec,
    tflm_refusal,
)
from tests.modelinfo_fixtures import tiny_model


def test_macs_and_parameters_of_the_hand_built_model():
    info = tiny_model()
    assert count_macs(info) == 8 * 9 + 10 * 8
    assert count_params(info) == 18 + 2 + 80 + 10


def test_kind_comes_from_the_tensor_types():
    assert model_kind(tiny_model()) == "int8"
    assert model_kind(tiny_model(weights_dtype="float32", input_dtype="float32")) == "float32"
    assert model_kind(tiny_model(weights_dtype="int8", input_dtype="float32")) == "dynamic-range"
    assert model_kind(tiny_model(weights_dtype="float16", input_dtype="float32")) == "float16"


def test_tflm_refuses_float16_and_dynamic_range_with_the_reason():
    assert tflm_refusal(tiny_model(), "int8") is None
    dynamic = tiny_model(weights_dtype="int8", input_dtype="float32")
    reason = tflm_refusal(dynamic, "dynamic-range")
    assert "no hybrid kernels" in reason and "CONV_2D v3" in reason
    assert "no float16 kernels" in tflm_refusal(tiny_model(), "float16")


def test_operator_table_gives_the_oldest_runtime_per_version():
    assert op_min_runtime("CONV_2D", 1) == "1.5.0"
    assert op_min_runtime("FULLY_CONNECTED", 12) == "2.17.0"
    assert op_min_runtime("FULLY_CONNECTED", 99) is None
    assert op_min_runtime("NOT_AN_OP", 1) is None
    assert all(call.startswith("Add") for call, _ in OP_TABLE.values())


def test_min_runtime_sorts_versions_as_versions_not_strings():
    info = tiny_model()
    # TRANSPOSE v7 needs 2.14.4; as strings "2.14.4" < "2.3.0" would wrongly win the other way.
    newer = replace(info, opcodes=(*info.opcodes, ("TRANSPOSE", 7), ("ADD", 3)))
    assert min_runtime(newer).version == "2.14.4"


def test_min_runtime_is_the_newest_per_op_minimum_and_names_unknown_ops():
    info = tiny_model()
    needs = min_runtime(info)
    assert needs.version == "1.14.0"  # CONV_2D v3, FULLY_CONNECTED v4, SOFTMAX v2: all 1.14.0
    assert needs.unknown_ops == [] and needs.converter_metadata == "1.14.0"
    uses = op_uses(info)
    assert [(u.name, u.version, u.count, u.tflm_call) for u in uses] == [
        ("CONV_2D", 3, 1, "AddConv2D()"),
        ("FULLY_CONNECTED", 4, 1, "AddFullyConnected()"),
        ("SOFTMAX", 2, 1, "AddSoftmax()"),
    ]


def test_tensor_spec_treats_int16_as_quantized_like_the_runtimes():
    spec = tensor_spec(tiny_model(), 0)
    assert spec.quantized and spec.scale == 0.5 and spec.zero_point == -1
    assert tensor_spec(tiny_model(input_dtype="float32"), 0).quantized is False


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "no TFL3 identifier"),
        (b"\0" * 4 + b"TFL3" + b"\xff" * 8, "no subgraph"),
        (b"\x10\0\0\0TFL3" + b"\0" * 8, "corrupt TFLite flatbuffer"),
    ],
)
def test_read_model_refuses_what_is_not_a_flatbuffer(data, message):
    with pytest.raises(ModelError, match=message):
        read_model(data, "x.tflite")


def test_ops_match_an_independent_read_with_the_tflite_package(exported):
    """The schema module in ai-edge-litert against PyPI's `tflite` package, on a real export."""
    tflite = pytest.importorskip("tflite")
    artifacts, _ = exported
    data = (artifacts / "model_int8.tflite").read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    independent = [
        (tflite.opcode2name(max(c.BuiltinCode(), c.DeprecatedBuiltinCode())), c.Version())
        for c in codes
    ]
    info = read_model(data)
    assert list(info.opcodes) == independent
    assert len(info.operators) == model.Subgraphs(0).OperatorsLength()
    assert count_macs(info) == 2_794_240 and count_params(info) == 93_322


def test_every_tflite_format_counts_the_same_macs_and_parameters(exported_all):
    """The cost comes from each file: float16 weights sit behind DEQUANTIZE ops, int8 ones
    carry scales; all are the same 93,322 parameters and 2,794,240 MACs."""
    artifacts, _ = exported_all
    costs = {p.name: model_cost(p) for p in sorted(artifacts.glob("*.tflite"))}
    assert len(costs) >= 5, costs
    assert {(c.macs, c.params) for c in costs.values()} == {(2_794_240, 93_322)}, costs

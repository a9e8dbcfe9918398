"""TFLM's side of a firmware project: the op resolver from the model's operators, the library's
file list for the chosen kernels (tflm.mk), engine.h/engine.cc/engine.mk and model_data.h/.cc
(the bundle's emitter, with the arena this CPU used)."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_edge import __version__
from mnist_edge.device.csource import model_data_files
from mnist_edge.firmware.boards import Board
from mnist_edge.firmware.project import ProjectInputs, render
from mnist_edge.model_info import ModelInfo
from mnist_edge.sources import SOURCE_BY_NAME

STACK_SIZE = 8 * 1024  # reserved after the statics; the firmware reports its peak use


# ----------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class Kernel:
    """An operator the firmware library compiles: its resolver call and source files."""

    op: str
    call: str  # MicroMutableOpResolver method
    files: tuple[str, ...]  # under tensorflow/lite/micro/kernels/
    cmsis_nn: bool = False  # kernels/cmsis_nn/<files[0]> replaces the reference file
    int8_registration: str | None = None  # CMSIS-NN's int8-only registration, where it has one


# The operators of small vision CNNs (the bundle's operator table); all are compiled, and the
# linker keeps only what the model's resolver registers.
LIBRARY_KERNELS: dict[str, Kernel] = {
    kernel.op: kernel
    for kernel in (
        Kernel("ADD", "AddAdd", ("add.cc", "add_common.cc"), True, "Register_ADD_INT8"),
        Kernel(
            "AVERAGE_POOL_2D",
            "AddAveragePool2D",
            ("pooling.cc", "pooling_common.cc"),
            True,
            "Register_AVERAGE_POOL_2D_INT8",
        ),
        Kernel("CONCATENATION", "AddConcatenation", ("concatenation.cc",)),
        Kernel(
            "CONV_2D", "AddConv2D", ("conv.cc", "conv_common.cc"), True, "Register_CONV_2D_INT8"
        ),
        Kernel(
            "DEPTHWISE_CONV_2D",
            "AddDepthwiseConv2D",
            ("depthwise_conv.cc", "depthwise_conv_common.cc"),
            True,
            "Register_DEPTHWISE_CONV_2D_INT8",
        ),
        Kernel("DEQUANTIZE", "AddDequantize", ("dequantize.cc", "dequantize_common.cc")),
        Kernel("EXPAND_DIMS", "AddExpandDims", ("expand_dims.cc",)),
        Kernel(
            "FULLY_CONNECTED",
            "AddFullyConnected",
            ("fully_connected.cc", "fully_connected_common.cc"),
            True,
            "Register_FULLY_CONNECTED_INT8",
        ),
        Kernel("LOGISTIC", "AddLogistic", ("logistic.cc", "logistic_common.cc")),
        Kernel(
            "MAX_POOL_2D",
            "AddMaxPool2D",
            ("pooling.cc", "pooling_common.cc"),
            True,
            "Register_MAX_POOL_2D_INT8",
        ),
        Kernel("MEAN", "AddMean", ("reduce.cc", "reduce_common.cc")),
        Kernel("MUL", "AddMul", ("mul.cc", "mul_common.cc"), True, "Register_MUL_INT8"),
        Kernel("PACK", "AddPack", ("pack.cc",)),
        Kernel("PAD", "AddPad", ("pad.cc", "pad_common.cc"), True, "Register_PAD_INT8"),
        Kernel("QUANTIZE", "AddQuantize", ("quantize.cc", "quantize_common.cc")),
        Kernel("RELU", "AddRelu", ("activations.cc", "activations_common.cc")),
        Kernel("RELU6", "AddRelu6", ("activations.cc", "activations_common.cc")),
        Kernel("RESHAPE", "AddReshape", ("reshape.cc", "reshape_common.cc")),
        Kernel("SHAPE", "AddShape", ("shape.cc",)),
        Kernel(
            "SOFTMAX",
            "AddSoftmax",
            ("softmax.cc", "softmax_common.cc"),
            True,
            "Register_SOFTMAX_INT8",
        ),
        Kernel("SQUEEZE", "AddSqueeze", ("squeeze.cc",)),
        Kernel("STRIDED_SLICE", "AddStridedSlice", ("strided_slice.cc", "strided_slice_common.cc")),
        Kernel(
            "TRANSPOSE",
            "AddTranspose",
            ("transpose.cc", "transpose_common.cc"),
            True,
            "Register_TRANSPOSE_INT8",
        ),
    )
}

# The interpreter (under tensorflow/); cortex_m_generic's debug_log.cc prints through a callback.
CORE_SOURCES = (
    "lite/micro/cortex_m_generic/debug_log.cc",
    "lite/micro/micro_time.cc",
    "lite/micro/flatbuffer_utils.cc",
    "lite/micro/memory_helpers.cc",
    "lite/micro/micro_allocation_info.cc",
    "lite/micro/micro_allocator.cc",
    "lite/micro/micro_context.cc",
    "lite/micro/micro_interpreter.cc",
    "lite/micro/micro_interpreter_context.cc",
    "lite/micro/micro_interpreter_graph.cc",
    "lite/micro/micro_log.cc",
    "lite/micro/micro_op_resolver.cc",
    "lite/micro/micro_profiler.cc",
    "lite/micro/micro_resource_variable.cc",
    "lite/micro/micro_utils.cc",
    "lite/micro/system_setup.cc",
    "lite/micro/arena_allocator/non_persistent_arena_buffer_allocator.cc",
    "lite/micro/arena_allocator/persistent_arena_buffer_allocator.cc",
    "lite/micro/arena_allocator/single_arena_buffer_allocator.cc",
    "lite/micro/memory_planner/greedy_memory_planner.cc",
    "lite/micro/memory_planner/linear_memory_planner.cc",
    "lite/micro/memory_planner/non_persistent_buffer_planner_shim.cc",
    "lite/micro/tflite_bridge/flatbuffer_conversions_bridge.cc",
    "lite/micro/tflite_bridge/micro_error_reporter.cc",
    "lite/core/api/flatbuffer_conversions.cc",
    "lite/core/api/tensor_utils.cc",
    "lite/core/c/common.cc",
    "compiler/mlir/lite/schema/schema_utils.cc",
    "compiler/mlir/lite/core/api/error_reporter.cc",
)
# What the kernels share (forgetting tensor_ctypes.cc leaves GetTensorShape undefined).
KERNEL_SUPPORT_SOURCES = (
    "lite/kernels/kernel_util.cc",
    "lite/kernels/internal/common.cc",
    "lite/kernels/internal/quantization_util.cc",
    "lite/kernels/internal/runtime_shape.cc",
    "lite/kernels/internal/tensor_ctypes.cc",
    "lite/kernels/internal/portable_tensor_utils.cc",
    "lite/kernels/internal/tensor_utils.cc",
    "lite/kernels/internal/reference/portable_tensor_utils.cc",
    "lite/micro/kernels/kernel_util.cc",
    "lite/micro/kernels/micro_tensor_utils.cc",
)

COMMON_DEFINES = (
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    "-DTF_LITE_MCU_DEBUG_LOG",
    "-DKERNELS_OPTIMIZED_FOR_SPEED",
)
# Double rounding stays (no TFLITE_SINGLE_ROUNDING): it is what host TFLM computes.
CMSIS_NN_DEFINES = ("-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0")
KERNELS_DESCRIPTION = {
    "reference": "its reference kernels",
    "cmsis-nn": "CMSIS-NN kernels (Arm's optimized int8 kernels)",
}
KERNELS_NAME = {"reference": "reference kernels", "cmsis-nn": "CMSIS-NN kernels"}


def library_sources(kernels: str) -> list[str]:
    """The TFLM files (relative to tensorflow/) compiled into the library for these kernels."""
    files = list(CORE_SOURCES) + list(KERNEL_SUPPORT_SOURCES)
    for kernel in LIBRARY_KERNELS.values():
        for index, name in enumerate(kernel.files):
            cmsis = kernels == "cmsis-nn" and kernel.cmsis_nn and index == 0
            path = f"lite/micro/kernels/{'cmsis_nn/' if cmsis else ''}{name}"
            if path not in files:
                files.append(path)
    return files


def unsupported_ops(info: ModelInfo) -> list[str]:
    """The model's operators the firmware library does not compile, as `NAME vVERSION`."""
    return sorted(
        {f"{name} v{version}" for name, version in info.opcodes if name not in LIBRARY_KERNELS}
    )


# Operators whose second input is int8 data too (weights, or the other addend), not a shape.
TWO_INT8_INPUTS = ("ADD", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _int8_only(info: ModelInfo, op: str) -> bool:
    """Whether every use of `op` in the model has int8 data in and out (and int8 weights)."""
    uses = [o for o in info.operators if o.op == op]

    def int8(index: int) -> bool:
        return index >= 0 and info.tensors[index].dtype == "int8"

    return bool(uses) and all(
        all(int8(i) for i in o.inputs[: 2 if op in TWO_INT8_INPUTS else 1]) and int8(o.outputs[0])
        for o in uses
    )


def resolver_calls(info: ModelInfo, kernels: str) -> list[str]:
    """One MicroMutableOpResolver call per operator kind, in the model's opcode order.

    With CMSIS-NN, an int8-only registration replaces the generic one where the kernel has it:
    the generic one also links the int16 and float paths (21-23 KB on this model).
    """
    calls = []
    for name in dict.fromkeys(name for name, _ in info.opcodes):
        kernel = LIBRARY_KERNELS[name]
        registration = ""
        if kernels == "cmsis-nn" and kernel.int8_registration and _int8_only(info, name):
            registration = f"tflite::{kernel.int8_registration}()"
        calls.append(f"{kernel.call}({registration})")
    return calls


def source_dirs() -> dict[str, str]:
    """Template fields naming each extracted repository's folder."""
    names = {
        "tflm_dir": "tflite-micro",
        "cmsis_nn_dir": "CMSIS-NN",
        "cmsis_6_dir": "CMSIS_6",
        "cortex_dfp_dir": "Cortex_DFP",
        "flatbuffers_dir": "flatbuffers",
        "gemmlowp_dir": "gemmlowp",
        "ruy_dir": "ruy",
    }
    return {field: SOURCE_BY_NAME[name].folder for field, name in names.items()}


def library_makefile(board: Board, kernels: str) -> str:
    """tflm.mk: the library's flags and files. Its text keys the library cache."""
    cmsis = kernels == "cmsis-nn"
    defines = COMMON_DEFINES + (CMSIS_NN_DEFINES if cmsis else ())
    tflm_sources = " \\\n".join(f"  {path}" for path in library_sources(kernels))
    cmsis_sources = (
        "# CMSIS-NN: every source but the float ones (ARM_NN_ENABLE_F16/F32 are off).\n"
        "LIB_SOURCES += $(filter-out %_f16.c %_f32.c %/arm_nntables_flt.c,\\\n"
        "  $(wildcard $(CMSIS_NN)/Source/*/*.c))"
        if cmsis
        else ""
    )
    return render(
        "tflm/tflm.mk",
        {
            "version": __version__,
            "tflm_commit_short": SOURCE_BY_NAME["tflite-micro"].commit[:12],
            "kernels_description": KERNELS_DESCRIPTION[kernels],
            "cpu": board.cpu,
            "cpu_flags": " ".join(board.cpu_flags),
            "defines": " ".join(defines),
            "cmsis_nn_includes": " -I$(CMSIS_NN) -I$(CMSIS_NN)/Include" if cmsis else "",
            "operators": " ".join(LIBRARY_KERNELS),
            "tflm_sources": tflm_sources,
            "cmsis_nn_sources": cmsis_sources,
            **source_dirs(),
        },
    )


def model_data(inputs: ProjectInputs, arena_size: int) -> dict[str, str]:
    """model_data.h/.cc: the bundle's files (the same emitter and templates), with the arena
    this CPU and these kernels used."""
    header, source = model_data_files(
        inputs.model,
        inputs.model_name,
        "g_model",
        arena_size,
        arena_note="arena_used_bytes() of this model on this CPU with these kernels, measured by\n"
        "// mnist-edge firmware in QEMU, rounded up to a multiple of 16.",
        command="mnist-edge firmware",
    )
    return {"model_data.h": header, "model_data.cc": source}


def step_names(info: ModelInfo) -> list[str]:
    """TFLM's operators in the order it invokes them, named as its profiler tags them with
    their index: CONV_2D_0, MAX_POOL_2D_1, ..."""
    return [f"{operator.op}_{index}" for index, operator in enumerate(info.operators)]


# The harness copies inputs and outputs as bytes: int8, or float32 for a full-integer model with
# float input or output (QUANTIZE and DEQUANTIZE inside).
_TFLITE_TYPES = {"int8": "kTfLiteInt8", "float32": "kTfLiteFloat32"}


def engine_files(
    inputs: ProjectInputs, board: Board, kernels: str, arena_size: int
) -> dict[str, bytes]:
    """TFLM's files of the project: engine.h, engine.cc, engine.mk, tflm.mk, model_data.h/.cc."""
    calls = resolver_calls(inputs.info, kernels)
    values = {
        "version": __version__,
        "model_name": inputs.model_name,
        "kernels_name": KERNELS_NAME[kernels],
        "kernels_description": KERNELS_DESCRIPTION[kernels],
        "cpu": board.cpu,
        "machine": board.machine,
        "input_bytes": inputs.input_bytes,
        "output_bytes": inputs.output_bytes,
        "input_type": _TFLITE_TYPES[inputs.inputs.dtype.name],
        "output_type": _TFLITE_TYPES[inputs.golden.dtype.name],
        "op_count": len(calls),
        "resolver_calls": "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.{call});" for call in calls),
        "sources": inputs.sources_root,
    }
    own = ("engine.h", "engine.cc", "engine.mk")
    files = {name: render(f"tflm/{name}", values) for name in own}
    files["tflm.mk"] = library_makefile(board, kernels)
    files |= model_data(inputs, arena_size)
    return {name: text.encode() for name, text in files.items()}

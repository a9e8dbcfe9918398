"""Every choice and default a user can set, in one module with no dependencies.

The library's functions take these as their defaults and check against these tables; the CLI
builds its Enums and option defaults from them (and stays fast to start: nothing here imports
numpy or an engine). A new runtime, format or target is one new entry here.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_ARTIFACTS = Path("artifacts")

# runtime name -> (file suffix, what computes)
RUNTIMES = {
    "litert": (".tflite", "LiteRT, XNNPACK delegate (its default on CPUs)"),
    "litert-ref": (".tflite", "LiteRT, builtin reference kernels, no delegate"),
    "tflm": (".tflite", "TensorFlow Lite Micro, reference kernels"),
    # The int8 model compiled to C (mnist_edge.codegen), built with the host's C compiler.
    "codegen": (".tflite", "the C engine: generated C99 + CMSIS-NN (plain C), host compiler"),
    "onnxruntime": (".onnx", "onnxruntime, CPU execution provider"),
    "keras": (".keras", "Keras 3 on TensorFlow, direct call"),
    "keras-predict": (".keras", "Keras 3 on TensorFlow, model.predict"),
}
DEFAULT_RUNTIME = {".tflite": "litert", ".onnx": "onnxruntime", ".keras": "keras"}
ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")

# train: recipes are (epochs, batch size, Adam's learning rate, schedule). "seed" is the original
# script's exactly; "fast" the default, chosen with benchmarks/training.py. An explicit
# --epochs, --batch-size, --learning-rate or --schedule overrides the recipe's value.
RECIPES: dict[str, dict[str, int | float | str]] = {
    "seed": {"epochs": 5, "batch_size": 128, "learning_rate": 1e-3, "schedule": "constant"},
    "fast": {"epochs": 2, "batch_size": 128, "learning_rate": 6e-3, "schedule": "one-cycle"},
}
DEFAULT_RECIPE = "fast"
DEFAULT_SEED = 0
# constant: the seed's; cosine: decays to zero over the run; one-cycle: a linear warm-up over
# the first 30% of the steps to the learning rate, then cosine decay to zero.
SCHEDULES = ("constant", "cosine", "one-cycle")
# auto: bfloat16 mixed precision where the CPU multiplies bfloat16 in hardware (amx_bf16 or
# avx512_bf16), float32 elsewhere. The saved model and every export are float32 whatever trained it.
PRECISIONS = ("auto", "float32", "bf16")

# export
DEFAULT_FORMATS = ("tflite-float32", "onnx-float32")
DEFAULT_CALIBRATION_SIZE = 500
ONNX_CALIBRATION_METHODS = ("minmax", "entropy", "percentile")

# verify: an export may fall at most this many percentage points below Keras' accuracy
DEFAULT_TOLERANCE_PP = 0.5

# bench
DEFAULT_RUNS = 1000
DEFAULT_WARMUP = 50
DEFAULT_BATCH_SIZES = (1, 64)
# --target ethos-u*: Arm's Ethos-U NPU configurations (`vela --help`, --accelerator-config), each
# compiled with vela's Arm/vela.ini and the system config and memory mode vela itself defaults
# to for that NPU, named here so every figure says what it assumed. Nothing runs: no emulator of
# the NPU is reachable, so their rows are vela's estimates (mnist_edge.npu), never timings.
NPU_TARGETS: dict[str, tuple[str, str]] = {
    **{
        f"ethos-u55-{macs}": ("Ethos_U55_High_End_Embedded", "Shared_Sram")
        for macs in (32, 64, 128, 256)
    },
    **{
        f"ethos-u65-{macs}": ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB")
        for macs in (256, 512)
    },
    **{
        f"ethos-u85-{macs}": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB")
        for macs in (128, 256, 512, 1024, 2048)
    },
}
NPU_CONFIG_FILE = "Arm/vela.ini"  # one of `vela --list-config-files`
NPU_BASIS = "estimate (vela)"  # what every NPU figure is: vela's, no NPU ran
# The CPU an Ethos-U55 is paired with: its firmware's measured figures (firmware.json, same
# model bytes) are shown beside the NPU's estimates.
NPU_HOST_CPU = "cortex-m55"
# --target presets: the runtimes such a device runs, and its threads (None: every core).
BENCH_TARGETS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "cpu": (("litert", "onnxruntime"), None),  # a desktop or server: XNNPACK, all cores
    "embedded": (("litert-ref", "onnxruntime"), 1),  # a small Linux board without XNNPACK
    "mcu": (("tflm",), 1),  # a microcontroller: TFLM, one image at a time
    # an Ethos-U NPU: no runtime runs, vela compiles and estimates (NPU_TARGETS)
    **{name: ((), 1) for name in NPU_TARGETS},
}

# predict
DEFAULT_TOP = 3

# bundle
DEFAULT_GOLDEN = 10
DEFAULT_C_NAME = "g_model"

# firmware: the CPUs (one row each in firmware/boards.py, which a test keeps equal to this) and
# the kernels TFLM is built with.
FIRMWARE_CPUS = (
    "cortex-m0",
    "cortex-m3",
    "cortex-m4",
    "cortex-m7",
    "cortex-m33",
    "cortex-m55",
    "rv32imc",  # RISC-V on a HiFive1 (the C engine only: TFLM's C++ has no RISC-V runtime here)
    "rv32imac",
)
FIRMWARE_KERNELS = ("reference", "cmsis-nn")
# tflm: the interpreter; codegen: the model compiled to C with a static memory plan (CMSIS-NN).
FIRMWARE_ENGINES = ("tflm", "codegen")
# The C engine's memory plan (codegen.plan.OPTIMISE, and auto: speed where it fits the board)
FIRMWARE_OPTIMISE = ("auto", "speed", "size")
DEFAULT_FIRMWARE_IMAGES = 20
# --inputs random: numpy's PCG64 with this seed unless --seed says otherwise
DEFAULT_INPUTS_SEED = 0
FIRMWARE_SOURCES_ENV = "MNIST_EDGE_FIRMWARE_SOURCES"

# bundle --prove: the platforms a bundle can be proven on, and the emulated boards' CPUs
# (Raspberry Pi 4 and 5); mnist_edge.proofs holds their facts (a test keeps them equal).
PROOF_PLATFORMS = ("linux-aarch64", "tflite-runtime-2.14")
PROOF_CPUS = ("cortex-a72", "cortex-a76")
DEFAULT_PROOF_IMAGES = 10_000

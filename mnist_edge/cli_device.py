"""The device commands of the CLI: `bundle` (what a device gets) and `firmware` (that bundle
built with TFLM for Cortex-M and run in QEMU). Registered on the app by cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_edge import options
from mnist_edge.artifacts import FIRMWARE_DIR, device_model
from mnist_edge.cli_options import (
    DEFAULT_ARTIFACTS,
    ArtifactsOption,
    Cpu,
    DataOption,
    Engine,
    InputsOption,
    JsonOption,
    Kernels,
    Npu,
    Optimise,
    ProofCpu,
    ProofPlatform,
    SeedOption,
    emit,
    every,
)
from mnist_edge.errors import CheckFailed


def bundle(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="The .tflite to ship. Default: model_int8_mcu.tflite in the artifacts (the "
            "MCU-lean model), else model_int8.tflite.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Bundle folder. Default: ARTIFACTS/bundle.", file_okay=False
        ),
    ] = None,
    golden: Annotated[
        int,
        typer.Option(
            min=1,
            max=10000,
            help="Test images whose TFLM outputs become golden; the default N of --inputs.",
        ),
    ] = options.DEFAULT_GOLDEN,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="The golden inputs, for any int8 model: random[:N] (seeded, uniform over the "
            "input's int8 range) or FILE.npy (N × the model's input shape, in its input dtype); "
            "mnist[:N] (the default where the model takes 28×28×1 images) is MNIST's first N "
            "test images. N defaults to --golden. Without labels, no accuracy.",
        ),
    ] = None,
    seed: SeedOption = options.DEFAULT_INPUTS_SEED,
    c_name: Annotated[
        str, typer.Option("--c-name", help="C name of the model array (its length: NAME_len).")
    ] = options.DEFAULT_C_NAME,
    max_arena: Annotated[
        int | None,
        typer.Option("--max-arena", min=1, help="Exit 1 if TFLM needs a larger arena (bytes)."),
    ] = None,
    max_flash: Annotated[
        int | None,
        typer.Option("--max-flash", min=1, help="Exit 1 if the model has more bytes than this."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier bundle in --out.")] = False,
    prove: Annotated[
        list[ProofPlatform] | None,
        typer.Option(
            help="Prove the bundle there too (repeatable): linux-aarch64 (a Raspberry Pi's OS, "
            "emulated with qemu-aarch64) or tflite-runtime-2.14. Environments are prepared in "
            "the cache on first use (downloads: Debian's arm64 packages, PyPI wheels)."
        ),
    ] = None,
    prove_cpu: Annotated[
        ProofCpu,
        typer.Option(help="The emulated board's CPU: cortex-a72 (Pi 4), cortex-a76 (Pi 5)."),
    ] = options.PROOF_CPUS[0],
    prove_images: Annotated[
        int, typer.Option(min=1, max=10_000, help="Test images each proof runs.")
    ] = options.DEFAULT_PROOF_IMAGES,
    engine: Annotated[
        list[Engine] | None,
        typer.Option(
            help="What to ship (repeatable): tflm (model_data.h/.cc for the interpreter), "
            "codegen (c_engine/: the model compiled to C with CMake and a golden test, checked "
            "against TFLM here) or all (the default; codegen left out, with the reason, where "
            "no C compiler or CMSIS-NN sources are at hand)."
        ),
    ] = None,
    sources: Annotated[
        Path | None,
        typer.Option(
            help="A folder with the pinned source archives (CMSIS-NN for the C engine). "
            f"Default: ${options.FIRMWARE_SOURCES_ENV}, else downloaded into the cache.",
            file_okay=False,
        ),
    ] = None,
    npu: Annotated[
        list[Npu] | None,
        typer.Option(
            help="Also compile the model with Arm's vela for this Ethos-U NPU (repeatable, "
            "e.g. ethos-u55-128; the [npu] extra): npu/<npu>/, and vela's estimate in the "
            "manifest (an estimate: no NPU runs here)."
        ),
    ] = None,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the device bundle: model, C arrays, TFLM golden vectors, manifest with the arena,
    and the model compiled to C (c_engine/: cmake -S . -B build && cmake --build build && ctest).

    Examples: `mnist-edge bundle --max-arena 65536 --max-flash 131072 --out fw/model`,
    `mnist-edge bundle --overwrite --prove linux-aarch64 --prove tflite-runtime-2.14`,
    `mnist-edge bundle --model kws_ref_model.tflite --inputs random:20 --out fw/kws`
    """
    from mnist_edge.bundle import bundle as make_bundle
    from mnist_edge.render import bundle_table

    result = make_bundle(
        artifacts,
        data,
        model=model,
        out=out,
        golden=golden,
        c_name=c_name,
        max_arena=max_arena,
        max_flash=max_flash,
        overwrite=overwrite,
        prove=[p.value for p in prove or []],
        prove_cpu=ProofCpu(prove_cpu).value,
        prove_images=prove_images,
        engines=every(engine or [Engine("all")], options.FIRMWARE_ENGINES),
        sources=sources,
        npu=[n.value for n in npu or []],
        inputs=inputs,
        seed=seed,
    )
    emit(result, bundle_table, as_json)


def firmware(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="The int8 .tflite to build in. Default: the bundle's model (ARTIFACTS/bundle), "
            "else model_int8_mcu.tflite, else model_int8.tflite.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    cpu: Annotated[
        list[Cpu] | None,
        typer.Option(
            help="CPU (repeatable): cortex-m0 (micro:bit, 16 KB RAM), cortex-m3 (STM32F100, "
            "8 KB RAM), cortex-m4, cortex-m7, cortex-m33, cortex-m55, or all."
        ),
    ] = None,
    engine: Annotated[
        list[Engine] | None,
        typer.Option(
            help="Engine (repeatable): tflm (the interpreter), codegen (the model compiled to C "
            "with a static memory plan, CMSIS-NN kernels) or all."
        ),
    ] = None,
    kernels: Annotated[
        list[Kernels] | None,
        typer.Option(
            help="TFLM's kernels (repeatable): reference, cmsis-nn or all (codegen: CMSIS-NN)."
        ),
    ] = None,
    optimise: Annotated[
        Optimise | None,
        typer.Option(
            help="The C engine's memory plan: speed (CMSIS-NN's convolutions whole), size "
            "(convolutions in place: less RAM, a few percent more instructions), or auto (the "
            "default): "
            "speed where it fits the board's RAM, else size."
        ),
    ] = None,
    images: Annotated[
        int,
        typer.Option(
            min=1,
            max=10_000,
            help="The first N MNIST test images (or N inputs of --inputs random), checked.",
        ),
    ] = options.DEFAULT_FIRMWARE_IMAGES,
    inputs: InputsOption = None,
    seed: SeedOption = options.DEFAULT_INPUTS_SEED,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output folder. Default: ARTIFACTS/firmware.", file_okay=False
        ),
    ] = None,
    sources: Annotated[
        Path | None,
        typer.Option(
            help="A folder with the pinned source archives (TFLM, CMSIS-NN, ...). Default: "
            f"${options.FIRMWARE_SOURCES_ENV}, else downloaded into the cache.",
            file_okay=False,
        ),
    ] = None,
    max_flash: Annotated[
        int | None,
        typer.Option("--max-flash", min=1, help="Exit 1 if an ELF needs more flash (bytes)."),
    ] = None,
    max_ram: Annotated[
        int | None,
        typer.Option("--max-ram", min=1, help="Exit 1 if a firmware needs more RAM (bytes)."),
    ] = None,
    run: Annotated[
        bool, typer.Option(help="Run each ELF in QEMU (--no-run: build and measure only).")
    ] = True,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            help="Seconds a QEMU run may take before it is stopped. Default: 300, and 0.1 more "
            "per image (TFLM runs about 15 inferences of the seed's CNN a second in QEMU).",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an earlier firmware run in --out.")
    ] = False,
    skip_missing_tools: Annotated[
        bool,
        typer.Option(
            help="Where the Arm toolchain or QEMU is missing, record that the firmware was "
            "skipped and why (the report says so) and exit 0, instead of exit 2 (make demo)."
        ),
    ] = False,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build the model for Cortex-M (TFLM, or compiled to C), run it in QEMU, check it bit for
    bit against host TFLM, measure it.

    For each CPU × engine × kernels: a firmware project (startup, linker script, the harness,
    the model, a Makefile), built with arm-none-eabi-gcc, run on QEMU's board for that CPU; its
    outputs compared with host TFLM's; flash, RAM, arena, stack and instructions per inference
    from the ELF and the run. Exit 1 if an output differs or a budget is exceeded. Examples:
    `mnist-edge firmware`, `mnist-edge firmware --engine all --images 100`,
    `mnist-edge firmware --engine codegen --cpu cortex-m0 --images 10000`,
    `mnist-edge firmware --cpu all --kernels all --max-flash 262144 --max-ram 65536`,
    `mnist-edge firmware --model kws_ref_model.tflite --inputs random:20 --engine all`,
    `mnist-edge firmware --engine codegen --cpu cortex-m0 --optimise size`
    """
    from mnist_edge.firmware import firmware as build_firmware
    from mnist_edge.inputs import inputs_for
    from mnist_edge.render import firmware_table

    model = model or device_model(artifacts)
    chosen = inputs_for(model, inputs, count=images, seed=seed, data=data)
    report = build_firmware(
        model,
        chosen,
        cpus=every(cpu or [Cpu("cortex-m4")], options.FIRMWARE_CPUS),
        kernels=every(kernels or [Kernels("cmsis-nn")], options.FIRMWARE_KERNELS),
        engines=every(engine or [Engine("tflm")], options.FIRMWARE_ENGINES),
        out=out or artifacts / FIRMWARE_DIR,
        sources=sources,
        max_flash=max_flash,
        max_ram=max_ram,
        run=run,
        overwrite=overwrite,
        timeout_s=timeout if timeout is not None else 300.0 + 0.1 * chosen.count,
        skip_missing_tools=skip_missing_tools,
        optimise=optimise.value if optimise else "auto",
    )
    emit(report, firmware_table, as_json)
    if not report:
        raise CheckFailed("; ".join(report.failures), label="firmware failed")

"""What the command modules share: the choices, the common options and printing a result.

`cli` (the pipeline's commands and the app) and `cli_device` (bundle, firmware) both import
this; neither imports the other's commands.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mnist_edge import options


def _choices(name: str, values) -> type[Enum]:
    """A str Enum for typer from one of the library's tables (options.py), never a copy."""
    return Enum(name, {value: value for value in values}, type=str)


Runtime = _choices("Runtime", [*options.RUNTIMES, "all"])
Schedule = _choices("Schedule", options.SCHEDULES)
Recipe = _choices("Recipe", options.RECIPES)
Precision = _choices("Precision", options.PRECISIONS)
OrtOptimization = _choices("OrtOptimization", options.ORT_OPTIMIZATION_LEVELS)
OnnxCalibration = _choices("OnnxCalibration", options.ONNX_CALIBRATION_METHODS)
Target = _choices("Target", options.BENCH_TARGETS)
Cpu = _choices("Cpu", [*options.FIRMWARE_CPUS, "all"])
ProofPlatform = _choices("ProofPlatform", options.PROOF_PLATFORMS)
ProofCpu = _choices("ProofCpu", options.PROOF_CPUS)
Kernels = _choices("Kernels", [*options.FIRMWARE_KERNELS, "all"])
Engine = _choices("Engine", [*options.FIRMWARE_ENGINES, "all"])
Optimise = _choices("Optimise", options.FIRMWARE_OPTIMISE)
Npu = _choices("Npu", options.NPU_TARGETS)


def int_list(value: str, option: str) -> list[int]:
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise typer.BadParameter(
            f"{value!r}: expected positive integers like 1,2", param_hint=option
        )
    return numbers


ArtifactsOption = Annotated[
    Path,
    typer.Option(
        "--artifacts",
        "-a",
        help="Artifacts folder (models, JSON records).",
        file_okay=False,
        dir_okay=True,
    ),
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="MNIST folder (four IDX files, raw or .gz) or mnist.npz. "
        "Default: the cache ($MNIST_EDGE_DATA or ~/.cache/mnist-edge), downloaded if empty.",
        exists=True,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout instead of a table.")
]
ModelOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--model",
        "-m",
        help="An export to use (repeatable). Default: every .tflite and .onnx in the artifacts.",
        exists=True,
        dir_okay=False,
    ),
]
RuntimeOption = Annotated[
    list[Runtime] | None,
    typer.Option(
        "--runtime",
        "-r",
        help="Runtime(s) to run each export on (repeatable); `all` = every one that fits the file. "
        "Default: litert for .tflite, onnxruntime for .onnx.",
    ),
]
InputsOption = Annotated[
    str | None,
    typer.Option(
        "--inputs",
        help="What to run the model on: mnist[:N] (MNIST's first N test images, the default "
        "where the model takes 28×28×1 images), random[:N] (seeded, uniform over the input's "
        "int8 range) or FILE.npy (N × the model's input shape, in its input dtype). N "
        "defaults to --images.",
    ),
]
SeedOption = Annotated[
    int,
    typer.Option("--seed", min=0, help="The seed of --inputs random (the same bytes each run)."),
]
ThreadsOption = Annotated[
    int, typer.Option("--threads", min=1, help="Threads for every engine (1 = a small device).")
]
DEFAULT_ARTIFACTS = options.DEFAULT_ARTIFACTS


def emit(result, table_builder, as_json: bool) -> None:
    if as_json:
        from mnist_edge.render import to_json

        typer.echo(to_json(result))
    else:
        console = Console()
        if not console.is_terminal:
            # Piped or captured: rich would assume 80 columns and truncate the table's cells.
            console = Console(width=200)
        console.print(table_builder(result))


def every(values, table) -> list[str]:
    """The chosen names, `all` expanded to the table's, in the table's order."""
    chosen = {v.value for v in values}
    return list(table) if "all" in chosen else [v for v in table if v in chosen]

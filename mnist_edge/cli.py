"""The `mnist-edge` command line: parse, call one library function, render the result."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mnist_edge import __version__, cli_device, cli_search, options
from mnist_edge.artifacts import INT8_TFLITE
from mnist_edge.cli_options import (
    DEFAULT_ARTIFACTS,
    ArtifactsOption,
    DataOption,
    InputsOption,
    JsonOption,
    ModelOption,
    OnnxCalibration,
    OrtOptimization,
    Precision,
    Recipe,
    Runtime,
    RuntimeOption,
    Schedule,
    SeedOption,
    Target,
    ThreadsOption,
    emit,
    int_list,
)
from mnist_edge.errors import CheckFailed, MnistEdgeError
from mnist_edge.files import native_stderr_captured

# Exit codes, decided here only: 0 done, 1 a check ran and failed, 2 bad input or setup.
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2


def _say(label: str, message: str) -> None:
    # Escaped: rich would eat "[train]" in "pip install 'mnist-edge[train]'" as a tag.
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]{label}:[/bold red] {escape(message)}", markup=True, highlight=False
    )


class ErrorHandlingGroup(TyperGroup):
    """Turns the project's exceptions into one line on stderr and an exit code; no traceback.

    Exceptions of ours mean user error (bad input, a missing file or extra) or a failed check,
    so the stack trace would only hide the message. Anything else is a bug and keeps its
    traceback.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CheckFailed as exc:
            _say(exc.label, str(exc))
            raise typer.Exit(EXIT_CHECK_FAILED) from None
        except MnistEdgeError as exc:
            _say("error", str(exc))
            raise typer.Exit(EXIT_USAGE) from None


app = typer.Typer(
    cls=ErrorHandlingGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    help=(
        "Train the classic Keras MNIST CNN, export it to int8 TFLite and ONNX, verify every "
        "export against Keras, benchmark it, and ship it to devices.\n\n"
        "Typical run: `mnist-edge train && mnist-edge export --int8 && mnist-edge verify && "
        "mnist-edge bench`"
    ),
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnist-edge {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show the engines' own log lines (TensorFlow, TFLM)."
        ),
    ] = False,
) -> None:
    """Progress and logs go to stderr; stdout carries only the table or the JSON."""
    if not verbose:
        # TensorFlow reads this once, at import: set before any command can import it.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        # C/C++ log lines (absl's oneDNN and CUDA notices, TFLM's prints) to a capture for the
        # whole command; what Python writes to stderr (ours) still shows.
        ctx.with_resource(native_stderr_captured())
        for name in ("tensorflow", "absl", "tf2onnx", "h5py"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=r"(tensorflow|keras|tf2onnx|onnxruntime)\b")
    # Our progress at INFO; other libraries' loggers (tf2onnx is chatty) at WARNING.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s", force=True)
    logging.getLogger("mnist_edge").setLevel(logging.WARNING if quiet else logging.INFO)


@app.command()
def data(data: DataOption = None, as_json: JsonOption = False) -> None:
    """Fetch and check MNIST; print where it is, the counts and the class histogram.

    Example: `mnist-edge data` or `mnist-edge data --data ~/mnist --json`
    """
    from mnist_edge.data import load_mnist, summarize
    from mnist_edge.render import data_table

    emit(summarize(load_mnist(data)), data_table, as_json)


@app.command()
def predict(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="PNG/JPEG files, folders of them, or .npy arrays (N×28×28 or N×28×28×1; "
            "uint8 0-255 or float 0-1, fed as is).",
            exists=True,
            show_default=False,
        ),
    ],
    model: Annotated[
        Path,
        typer.Option(
            "--model", "-m", help="Any export (.tflite, .onnx) or model.keras.", dir_okay=False
        ),
    ] = DEFAULT_ARTIFACTS / INT8_TFLITE,
    runtime: Annotated[
        Runtime | None,
        typer.Option(
            "--runtime", "-r", help="Default: litert (.tflite), onnxruntime (.onnx), keras."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Classify handwritten digits: class, probability and top 3 per image; exit 1 if any skipped.

    Images get MNIST's preprocessing (grayscale, inverted if light, cropped, fit to 20×20,
    centered by mass in 28×28). Example: `mnist-edge predict digits/ scan.jpg -m model.onnx`
    """
    from mnist_edge.predict import predict as predict_digits
    from mnist_edge.render import predict_table

    result = predict_digits(paths, model=model, runtime=runtime.value if runtime else None)
    emit(result, predict_table, as_json)
    if not result:
        skipped = result.skipped
        raise CheckFailed(
            "; ".join(f"{p.file}: {p.error}" for p in skipped),
            label=f"skipped {len(skipped)} of {len(result.predictions)}",
        )


@app.command()
def train(
    recipe: Annotated[
        Recipe,
        typer.Option(
            help="fast (the default: 2 epochs, Adam at 6e-3 in one cycle) or seed (the original "
            "script's 5 epochs of Adam at 1e-3). The options below override its values."
        ),
    ] = options.DEFAULT_RECIPE,
    epochs: Annotated[int | None, typer.Option(min=1, help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Batch size.")] = None,
    seed: Annotated[
        int, typer.Option(help="Random seed (weights, shuffling).")
    ] = options.DEFAULT_SEED,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N training images.")
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="Adam's (peak) learning rate, above 0.")
    ] = None,
    schedule: Annotated[
        Schedule | None,
        typer.Option(
            help="constant (the seed's), cosine (decays to zero) or one-cycle (warm-up, decay)."
        ),
    ] = None,
    precision: Annotated[
        Precision,
        typer.Option(
            help="auto: bfloat16 mixed precision where the CPU multiplies bfloat16 in hardware "
            "(amx_bf16 or avx512_bf16), float32 elsewhere. The saved model is float32 either way."
        ),
    ] = options.PRECISIONS[0],
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    data: DataOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model.keras.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Train the seed CNN (Adam, 10% validation) and write model.keras and train.json.

    Examples: `mnist-edge train` (the fast recipe), `mnist-edge train --recipe seed` (the
    original script's) or `mnist-edge train --epochs 1 --limit 5000 --artifacts /tmp/quick`
    """
    from mnist_edge.model import train as train_model
    from mnist_edge.render import StepProgress, epoch_line, train_table

    log = logging.getLogger("mnist_edge")
    total = epochs or int(options.RECIPES[Recipe(recipe).value]["epochs"])
    with StepProgress(enabled=not as_json) as progress:
        result = train_model(
            data,
            artifacts,
            recipe=Recipe(recipe).value,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            limit=limit,
            learning_rate=learning_rate,
            schedule=Schedule(schedule).value if schedule else None,
            precision=Precision(precision).value,
            overwrite=overwrite,
            on_epoch=lambda stats: log.info(epoch_line(stats, total)),
            on_step=lambda epoch, step, steps: progress(f"epoch {epoch}/{total}", step, steps),
        )
    emit(result, train_table, as_json)


@app.command()
def export(
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--formats",
            "-f",
            help="Formats to write, comma-separated or repeated: tflite-float32, tflite-float16, "
            "tflite-dynamic, tflite-int8, onnx-float32, onnx-int8, or all. "
            "Default: tflite-float32,onnx-float32.",
        ),
    ] = None,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Add the full-integer TFLite models (int8 I/O): model_int8.tflite and the "
            "MCU-lean model_int8_mcu.tflite (batch 1). Short for -f tflite-int8,tflite-int8-mcu.",
        ),
    ] = False,
    calibration_size: Annotated[
        int, typer.Option(min=1, help="Training images that calibrate the int8 ranges.")
    ] = options.DEFAULT_CALIBRATION_SIZE,
    onnx_calibration: Annotated[
        OnnxCalibration, typer.Option(help="Calibration method of the ONNX int8 export.")
    ] = options.ONNX_CALIBRATION_METHODS[0],
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    data: DataOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing exports.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Export model.keras to TFLite and ONNX: float32 by default, quantized on request.

    Also records Keras' outputs on the test set (reference.npz), so verify needs no TensorFlow.
    Examples: `mnist-edge export --int8` or `mnist-edge export --formats all --overwrite`
    """
    from mnist_edge.export import export as export_model
    from mnist_edge.render import export_table

    result = export_model(
        artifacts,
        data,
        formats=[name.strip() for value in formats or [] for name in value.split(",")] or None,
        int8=int8,
        calibration_size=calibration_size,
        onnx_calibration=OnnxCalibration(onnx_calibration).value,
        overwrite=overwrite,
    )
    emit(result, export_table, as_json)


@app.command()
def verify(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    model: ModelOption = None,
    runtime: RuntimeOption = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Largest accuracy drop below Keras allowed, in pp.")
    ] = options.DEFAULT_TOLERANCE_PP,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use only the first N test images.")
    ] = None,
    threads: ThreadsOption = 1,
    inputs: InputsOption = None,
    seed: SeedOption = options.DEFAULT_INPUTS_SEED,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run every export on the 10,000 test images and compare with Keras; exit 1 on a failure.
    With --inputs: each .tflite's outputs on those inputs against host TFLM's, byte for byte
    (default runtime: codegen), for any int8 model.

    Examples: `mnist-edge verify` or
    `mnist-edge verify -m artifacts/model_int8.tflite -r all --json` or
    `mnist-edge verify -m kws_ref_model.tflite -r codegen --inputs random:1000`
    """
    from mnist_edge.render import identity_table, verify_table
    from mnist_edge.verify import verify as verify_exports
    from mnist_edge.verify import verify_inputs

    if inputs is not None:
        runtimes = [r.value for r in runtime] if runtime else None
        found = verify_inputs(
            artifacts,
            data,
            inputs=inputs,
            models=model,
            runtimes=runtimes,
            seed=seed,
            count=limit or 10_000,
        )
        emit(found, identity_table, as_json)
        if not found:
            raise CheckFailed("; ".join(found.failures), label="verify failed")
        return
    report = verify_exports(
        artifacts,
        data,
        models=model,
        runtimes=[r.value for r in runtime] if runtime else None,
        tolerance_pp=tolerance,
        limit=limit,
        threads=threads,
    )
    emit(report, verify_table, as_json)
    if not report:
        raise CheckFailed("; ".join(report.failures), label="verify failed")


@app.command()
def bench(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    model: ModelOption = None,
    runtime: RuntimeOption = None,
    target: Annotated[
        Target | None,
        typer.Option(
            "--target",
            "-t",
            help="A device preset instead of --runtime: `cpu` = litert (XNNPACK) and "
            "onnxruntime on every core; `embedded` = litert-ref and onnxruntime, 1 thread; "
            "`mcu` = tflm, with its arena and flash; `ethos-u55-128` (and every Ethos-U "
            "configuration vela knows) = vela's estimates for that NPU, nothing timed, beside "
            "the Cortex-M55 firmware's measurements of the same bytes (needs the [npu] extra).",
        ),
    ] = None,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per row.")] = options.DEFAULT_RUNS,
    warmup: Annotated[
        int, typer.Option(min=0, help="Untimed runs before timing.")
    ] = options.DEFAULT_WARMUP,
    threads: Annotated[
        str | None,
        typer.Option(
            "--threads",
            help="Thread counts, comma-separated (e.g. 1,2). Default: 1, or the --target's.",
        ),
    ] = None,
    batch_sizes: Annotated[
        str,
        typer.Option(
            "--batch-sizes", "--batch-size", help="Batch sizes, comma-separated (1 = one image)."
        ),
    ] = ",".join(map(str, options.DEFAULT_BATCH_SIZES)),
    xnnpack: Annotated[
        bool,
        typer.Option(
            help="LiteRT with its XNNPACK delegate; --no-xnnpack runs the builtin kernels "
            "(litert-ref), closer to what a small device runs."
        ),
    ] = True,
    ort_optimization: Annotated[
        OrtOptimization, typer.Option(help="onnxruntime graph optimization level.")
    ] = options.ORT_OPTIMIZATION_LEVELS[-1],
    roofline: Annotated[
        bool, typer.Option(help="Measure the matrix-multiply roofline (needs onnx, [train]).")
    ] = True,
    inputs: InputsOption = None,
    seed: SeedOption = options.DEFAULT_INPUTS_SEED,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Time each export: latency percentiles, throughput, MAC rate against the roofline.

    Every runtime, thread count and batch size gets a row; `-r all` adds the Keras baseline
    (direct call and model.predict) and each row's speed-up over it. Writes bench.json,
    bench.csv and bench.png. Examples: `mnist-edge bench`,
    `mnist-edge bench -r all --threads 1,2 --batch-sizes 1,64`, `mnist-edge bench --target mcu`,
    `mnist-edge bench --target ethos-u55-128` (vela's estimates, labelled so; default model:
    the int8 export for a device), `mnist-edge bench -m kws.tflite -r codegen --inputs random`
    (any .tflite, timed on its own inputs)
    """
    from mnist_edge.bench import bench as bench_exports
    from mnist_edge.render import bench_table

    report = bench_exports(
        artifacts,
        data,
        models=model,
        runtimes=[r.value for r in runtime] if runtime else None,
        runs=runs,
        warmup=warmup,
        threads=int_list(threads, "--threads") if threads else None,
        batch_sizes=int_list(batch_sizes, "--batch-sizes"),
        target=target.value if target else None,
        xnnpack=xnnpack,
        ort_optimization=OrtOptimization(ort_optimization).value,
        roofline=roofline,
        inputs=inputs,
        seed=seed,
    )
    emit(report, bench_table, as_json)


@app.command()
def report(
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write artifacts/report.html: one self-contained page with every record and its charts.

    Training curves, exports and sizes, the verify table, confusion matrices of Keras and the
    int8 model, the digits on which they disagree, per-class accuracy, the bench chart and
    table, and the device: the bundle's manifest. Example: `mnist-edge report`
    """
    from mnist_edge.render import report_table
    from mnist_edge.report import build_report

    emit(build_report(artifacts, data), report_table, as_json)


# The device commands live in their own module; registered here, after the pipeline's.
app.command()(cli_device.bundle)
app.command()(cli_device.firmware)
app.command()(cli_search.search)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="mnist-edge")

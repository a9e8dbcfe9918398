"""The `search` command: the most accurate model that fits a board, found by an Optuna study and
measured on the board's own engine. Registered on the app by cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mnist_edge.cli_options import DEFAULT_ARTIFACTS, ArtifactsOption, DataOption, JsonOption, emit
from mnist_edge.errors import CheckFailed


def search(
    board: Annotated[
        str,
        typer.Option(
            help="The CPU whose board the models must fit: cortex-m0 (micro:bit, 16 KB RAM), "
            "cortex-m3, cortex-m4, ... (firmware --cpu's names)."
        ),
    ] = "cortex-m0",
    max_ram: Annotated[
        int | None, typer.Option(help="RAM budget in bytes: the C engine's plan and stack.")
    ] = None,
    max_flash: Annotated[
        int | None,
        typer.Option(help="Flash budget in bytes: the C engine's code and constants (the link)."),
    ] = None,
    max_instructions: Annotated[
        int | None, typer.Option(help="Budget of instructions per inference (QEMU).")
    ] = None,
    min_accuracy: Annotated[
        float | None,
        typer.Option(help="Least int8 accuracy on the held-out images, a fraction (0.99)."),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            help="Complete trials the study should have, counting earlier runs' and other "
            "workers' (a second run with the same number only prints the front)."
        ),
    ] = 20,
    space: Annotated[
        str,
        typer.Option(help="The family: full (contains the seed's CNN) or small (tests)."),
    ] = "full",
    storage: Annotated[
        str | None,
        typer.Option(
            help="The study's SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db for "
            "workers on many machines. Default: SQLite in ARTIFACTS/search/studies.db."
        ),
    ] = None,
    study: Annotated[str, typer.Option(help="The study's name in the storage.")] = "search",
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every training.")] = 0,
    train_limit: Annotated[
        int | None, typer.Option(help="Train on the first N training images only.")
    ] = None,
    eval_limit: Annotated[
        int | None, typer.Option(help="Score on the first N held-out and N test images only.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Train every trial this many epochs (not the space's).")
    ] = None,
    run: Annotated[
        bool, typer.Option(help="Run each firmware in QEMU (--no-run: link only, no instructions).")
    ] = True,
    heartbeat: Annotated[
        float,
        typer.Option(
            help="Seconds between a running trial's heartbeats; one silent for 4 is retried."
        ),
    ] = 30.0,
    pick: Annotated[
        bool,
        typer.Option(
            "--pick",
            help="Write the front's most accurate model.keras to --pick-to (or --trial's).",
        ),
    ] = False,
    trial: Annotated[
        int | None, typer.Option(help="With --pick: this trial's model instead.")
    ] = None,
    pick_to: Annotated[
        Path | None,
        typer.Option(
            help="The picked model's artifacts folder. Default: ARTIFACTS/picked.", file_okay=False
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier pick.")] = False,
    sources: Annotated[
        Path | None,
        typer.Option(
            help="A folder with the pinned source archives (CMSIS-NN). Default: "
            "$MNIST_EDGE_FIRMWARE_SOURCES, else downloaded into the cache.",
            file_okay=False,
        ),
    ] = None,
    artifacts: ArtifactsOption = DEFAULT_ARTIFACTS,
    data: DataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find the most accurate model that fits a board: an Optuna study over small CNNs, each
    trained, exported to int8, compiled with the C engine and measured on the board.

    Accuracy on the host C engine (bit-identical to TFLM), flash and RAM from the firmware's
    link, instructions from QEMU; the budgets are constraints. Ctrl-C and run again: the study
    goes on. Exit 1 if no trial meets the budgets. Examples:
    `mnist-edge search --board cortex-m0 --max-ram 4096 --max-flash 32768 --trials 8`,
    `mnist-edge search --trials 0 --pick` (pick from the trials so far), `mnist-edge search
    --storage postgresql+psycopg2://me@db/studies --study m0 --trials 60` on every machine
    """
    from mnist_edge.render import StepProgress
    from mnist_edge.search import Budgets
    from mnist_edge.search import pick as pick_trial
    from mnist_edge.search import search as run_search
    from mnist_edge.search.table import search_table

    budgets = Budgets(max_ram, max_flash, max_instructions, min_accuracy)
    with StepProgress(enabled=not as_json) as progress:
        result = run_search(
            artifacts,
            data,
            board=board,
            trials=trials,
            budgets=budgets,
            space=space,
            storage=storage,
            study=study,
            seed=seed,
            train_limit=train_limit,
            eval_limit=eval_limit,
            epochs=epochs,
            run=run,
            heartbeat=heartbeat,
            sources=sources,
            on_step=progress,
        )
    if result.complete and not result.feasible:
        emit(result, search_table, as_json)
        raise CheckFailed(
            f"none of the {result.complete} complete trials meets the budgets",
            label="search found nothing",
        )
    if pick or trial is not None:
        result = pick_trial(
            artifacts, trial=trial, storage=storage, study=study, out=pick_to, overwrite=overwrite
        )
    emit(result, search_table, as_json)

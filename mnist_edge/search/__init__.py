"""Search: the most accurate model that fits a chip, measured on the chip's own engine.

An Optuna study over a family of CNNs (`space`) that holds the seed's. Each trial (`measure`)
trains an architecture, exports the MCU-lean int8 model as `export --int8` does, scores it with
the C engine on the host (int8, bit-identical to TFLM), links the C engine's firmware for the
board (flash: code and constants; RAM: plan and stack) and runs it in QEMU (instructions). The
budgets are constraints: a trial over one is infeasible, not an error. The study lives in its
storage (`study`): SQLite in the artifacts folder by default, so a second run goes on where the
first stopped; any SQLAlchemy URL Optuna takes (PostgreSQL) for workers on many machines.

    result = search(Path("artifacts"), None, board="cortex-m0", trials=8,
                    budgets=Budgets(max_ram=4096, max_flash=32768))
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from mnist_edge.artifacts import MODEL_FILE, record_payload
from mnist_edge.errors import MnistEdgeError
from mnist_edge.files import json_bytes, prepare_output_dir, refuse_overwrite, write_files_atomic
from mnist_edge.search.records import Budgets, SearchResult, SearchSettings, TrialRecord
from mnist_edge.search.space import SPACES, space_for, suggest

__all__ = ["SPACES", "Budgets", "SearchResult", "SearchSettings", "TrialRecord", "pick", "search"]

log = logging.getLogger(__name__)

SEARCH_DIR = "search"
SEARCH_JSON = "search.json"
PICKED_JSON = "picked.json"
PICKED_DIR = "picked"
STUDIES_DB = "studies.db"
DEFAULT_STUDY = "search"
DEFAULT_HEARTBEAT_S = 30.0
FIRMWARE_IMAGES = 20  # firmware's default: its figures there equal the trial's


def default_storage(artifacts: Path) -> str:
    """SQLite in the artifacts folder: one file holds every study searched from it."""
    return f"sqlite:///{(Path(artifacts) / SEARCH_DIR / STUDIES_DB).resolve()}"


def load_result(artifacts: Path) -> SearchResult | None:
    """The search.json of an artifacts folder, or None where there is none."""
    from mnist_edge.records import RecordError, from_dict

    path = Path(artifacts) / SEARCH_JSON
    if not path.is_file():
        return None
    try:
        return from_dict(SearchResult, json.loads(path.read_text()))
    except (OSError, ValueError, RecordError, TypeError) as exc:
        raise MnistEdgeError(f"{path}: not a search record ({exc}); run search again.") from None


def _check(board: str, budgets: Budgets, trials: int, heartbeat: float, limits: dict) -> None:
    from mnist_edge.firmware.boards import board_for

    found = board_for(board)
    for name in ("max_ram", "max_flash", "max_instructions"):
        value = getattr(budgets, name)
        if value is not None and value <= 0:
            option = "--" + name.replace("_", "-")
            raise MnistEdgeError(f"Invalid {option} {value}: expected a positive number.")
    if budgets.min_accuracy is not None and not 0 < budgets.min_accuracy <= 1:
        raise MnistEdgeError(
            f"Invalid --min-accuracy {budgets.min_accuracy}: expected a fraction like 0.99."
        )
    if budgets.max_ram is not None and budgets.max_ram > found.data.length:
        log.warning(
            "--max-ram %d is more than %s's RAM (%d B)", budgets.max_ram, board, found.data.length
        )
    if trials < 0:
        raise MnistEdgeError(f"Invalid --trials {trials}: expected 0 or more.")
    if heartbeat <= 0:
        raise MnistEdgeError(f"Invalid --heartbeat {heartbeat:g}: expected seconds above 0.")
    for option, (value, least) in limits.items():
        if value is not None and value < least:
            raise MnistEdgeError(f"Invalid {option} {value}: expected {least} or more.")


def _check_tools(board: str, run: bool) -> None:
    """Fail before the first trial, not after its training, where a tool is missing."""
    from mnist_edge.codegen.host import find_compiler
    from mnist_edge.deps import require
    from mnist_edge.firmware.boards import board_for
    from mnist_edge.firmware.build import find_toolchain
    from mnist_edge.firmware.qemu import find_qemu

    require("optuna")
    find_compiler()
    found = board_for(board)
    find_toolchain(found.arch)
    if run:
        find_qemu(found.qemu)


def _objective(space, settings: SearchSettings, mnist, folder: Path, sources, on_step):
    from mnist_edge.search.measure import measure
    from mnist_edge.search.study import RECORD_ATTR

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial):
        arch = suggest(trial, space)
        if settings.epochs is not None:
            arch = replace(arch, epochs=settings.epochs)
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("architecture", arch.describe())
        log.info("Trial %d: %s", trial.number, arch.describe())
        record = measure(
            arch,
            mnist,
            settings,
            folder / f"trial-{trial.number:04d}",
            number=trial.number,
            worker=worker,
            sources=sources,
            on_step=(lambda e, s, n: on_step(f"trial {trial.number} epoch {e}", s, n))
            if on_step
            else None,
        )
        trial.set_user_attr(RECORD_ATTR, record_payload(record))
        for name, value in _constraints(record, settings.budgets).items():
            trial.set_constraint(name, value)
        log.info("Trial %d: %s", trial.number, describe_figures(record))
        return _values(record, settings)

    return objective


def _values(record: TrialRecord, settings: SearchSettings) -> list[float]:
    # A model the board cannot hold has no link and no run: its int8 file's bytes and its MACs
    # stand in (lower bounds that grow with the model), and the "board" constraint fails it.
    flash = record.flash_bytes if record.flash_bytes is not None else record.tflite_bytes
    values = [record.accuracy, float(flash)]
    if settings.run:
        values.append(float(record.instructions if record.instructions else record.macs))
    return values


def _constraints(record: TrialRecord, budgets: Budgets) -> dict[str, float]:
    """Optuna's constraints (feasible at <= 0), relative to each budget so that none outweighs
    the others where the sampler ranks infeasible trials."""
    figures = {
        "ram": (record.ram_bytes, budgets.max_ram),
        "flash": (record.flash_bytes, budgets.max_flash),
        "instructions": (record.instructions, budgets.max_instructions),
    }
    values = {
        name: (value - limit) / limit if value is not None else 0.0
        for name, (value, limit) in figures.items()
        if limit is not None
    }
    if budgets.min_accuracy is not None:
        values["accuracy"] = (budgets.min_accuracy - record.accuracy) / budgets.min_accuracy
    values["board"] = 0.0 if record.fits_board else 1.0
    values["golden"] = record.violations.get("golden", 0.0)
    return values


def describe_figures(record: TrialRecord) -> str:
    """A trial's figures in one line, for the progress log."""
    if not record.fits_board:
        return f"accuracy {record.accuracy:.2%}; does not fit the board: {record.reason}"
    instructions = f"{record.instructions:,}" if record.instructions is not None else "not run"
    over = ", ".join(
        f"{k} under by {v:.2%}" if k == "accuracy" else f"{k} over by {v:,.0f}"
        for k, v in record.violations.items()
    )
    return (
        f"accuracy {record.accuracy:.2%} (test {record.test_accuracy:.2%}), flash "
        f"{record.flash_bytes:,} B, RAM {record.ram_bytes:,} B, instructions {instructions}: "
        + (f"infeasible ({over})" if over else "feasible")
    )


def _records(study) -> list[TrialRecord]:
    from mnist_edge.records import from_dict
    from mnist_edge.search.study import RECORD_ATTR

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return [from_dict(TrialRecord, t.user_attrs[RECORD_ATTR]) for t in complete]


def pareto_front(records: list[TrialRecord], objectives: tuple[str, ...]) -> list[TrialRecord]:
    """The feasible trials no other feasible trial beats on every objective (accuracy up; flash
    and instructions down), most accurate first."""

    def key(r: TrialRecord) -> tuple[float, ...]:
        costs = {"accuracy": -r.accuracy, "flash": r.flash_bytes, "instructions": r.instructions}
        return tuple(float(costs[name]) for name in objectives)

    feasible = [r for r in records if r.feasible]

    def beaten(r: TrialRecord) -> bool:
        mine = key(r)
        return any(
            all(a <= b for a, b in zip(key(o), mine, strict=True)) and key(o) != mine
            for o in feasible
        )

    front = [r for r in feasible if not beaten(r)]
    return sorted(front, key=lambda r: (key(r), r.number))


def _result(study, url: str, settings, started: float, **extra) -> SearchResult:
    from mnist_edge.machine import library_versions
    from mnist_edge.search.study import counts, hide_password

    state = counts(study)
    records = _records(study)
    retried = sum("failed_trial" in t.system_attrs for t in study.get_trials(deepcopy=False))
    return SearchResult(
        study=study.study_name,
        storage=hide_password(url),
        settings=settings,
        complete=state["COMPLETE"],
        failed=state["FAIL"],
        retried=retried,
        running=state["RUNNING"],
        feasible=sum(r.feasible for r in records),
        front=pareto_front(records, settings.objectives),
        trials=sorted(records, key=lambda r: r.number),
        seconds=round(time.perf_counter() - started, 3),
        versions=library_versions("optuna", "tensorflow", "keras"),
        **extra,
    )


def search(
    artifacts: Path,
    data,
    *,
    board: str,
    trials: int,
    budgets: Budgets | None = None,
    space: str = "full",
    storage: str | None = None,
    study: str = DEFAULT_STUDY,
    seed: int = 0,
    train_limit: int | None = None,
    eval_limit: int | None = None,
    epochs: int | None = None,
    run: bool = True,
    heartbeat: float = DEFAULT_HEARTBEAT_S,
    sources: Path | None = None,
    on_step: Callable[[str, int, int], None] | None = None,
) -> SearchResult:
    """Run the study until it has `trials` complete trials (with other workers, if any, on the
    same storage); write ARTIFACTS/search.json and return the front.

    `storage`: an SQLAlchemy URL Optuna takes; default SQLite in ARTIFACTS/search/. Each trial
    keeps its files in ARTIFACTS/search/STUDY/trial-NNNN/ on the machine that ran it.
    `on_step(label, done, total)` follows each trial's training.
    """
    from mnist_edge.data import ensure_mnist
    from mnist_edge.search.study import open_study, run_workers_share

    started = time.perf_counter()
    budgets = budgets or Budgets()
    limits = {"--train-limit": (train_limit, 10), "--eval-limit": (eval_limit, 1)}
    _check(board, budgets, trials, heartbeat, {**limits, "--epochs": (epochs, 1)})
    chosen = space_for(space)
    _check_tools(board, run)
    settings = SearchSettings(
        board=board,
        space=chosen.name,
        budgets=budgets,
        seed=seed,
        train_limit=train_limit,
        eval_limit=eval_limit,
        epochs=epochs,
        run=run,
        firmware_images=FIRMWARE_IMAGES,
    )
    artifacts = prepare_output_dir(artifacts)
    (artifacts / SEARCH_DIR).mkdir(exist_ok=True)
    url = storage or default_storage(artifacts)
    found, settings = open_study(url, study, settings, heartbeat, trials)
    mnist = ensure_mnist(data)
    folder = artifacts / SEARCH_DIR / study
    objective = _objective(chosen, settings, mnist, folder, sources, on_step)

    def waiting(state) -> None:
        log.info("%d trial(s) running elsewhere: waiting for them", state["RUNNING"])

    run_workers_share(found, objective, trials, heartbeat, on_wait=waiting)
    result = _result(found, url, settings, started)
    write_files_atomic({artifacts / SEARCH_JSON: json_bytes(record_payload(result))})
    return result


def _chosen(result: SearchResult, trial: int | None) -> TrialRecord:
    if trial is None:
        if not result.front:
            raise MnistEdgeError(
                f"Study {result.study!r} has no feasible trial to pick "
                f"({result.complete} complete): relax a budget or run more trials."
            )
        return result.front[0]  # the most accurate; then the least flash and instructions
    for record in result.trials:
        if record.number == trial:
            if not record.feasible:
                log.warning("Trial %d is not feasible: %s", trial, describe_figures(record))
            return record
    numbers = ", ".join(str(r.number) for r in result.trials) or "none"
    raise MnistEdgeError(f"No complete trial {trial} in {result.study!r} (complete: {numbers}).")


def pick(
    artifacts: Path,
    *,
    trial: int | None = None,
    storage: str | None = None,
    study: str = DEFAULT_STUDY,
    out: Path | None = None,
    overwrite: bool = False,
) -> SearchResult:
    """Write a trial's model.keras (the front's most accurate, or trial `trial`) and its record
    (picked.json) into an artifacts folder of its own, where export, verify, bundle and firmware
    read it; the study's result with the pick."""
    from mnist_edge.search.study import open_study

    started = time.perf_counter()
    url = storage or default_storage(artifacts)
    found, settings = open_study(url, study, None, DEFAULT_HEARTBEAT_S)
    chosen = _chosen(_result(found, url, settings, started), trial)
    source = Path(chosen.folder) / MODEL_FILE
    if not source.is_file():
        raise MnistEdgeError(
            f"Trial {chosen.number}'s model is not here: {source} (it ran on {chosen.worker}); "
            "pick it on that machine."
        )
    out = prepare_output_dir(Path(out) if out is not None else Path(artifacts) / PICKED_DIR)
    refuse_overwrite([out / MODEL_FILE, out / PICKED_JSON], overwrite)
    write_files_atomic(
        {
            out / MODEL_FILE: source.read_bytes(),
            out / PICKED_JSON: json_bytes(record_payload(chosen)),
        }
    )
    log.info("Trial %d's model.keras written to %s", chosen.number, out)
    return _result(found, url, settings, started, picked=chosen, picked_to=str(out))

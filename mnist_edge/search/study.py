"""The Optuna side: the storage (SQLite in the artifacts folder, or any SQLAlchemy URL), the study
and its settings, the seeded sampler, and the worker loop that many processes can run at once.

The storage is the state. A worker's trial keeps a heartbeat in it; a worker killed mid-trial
stops beating, and the next worker to look marks that trial failed and queues it again
(RetryHeartbeatStaleTrialCallback), so no trial is left running forever and none is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable

from mnist_edge.errors import MnistEdgeError, first_line
from mnist_edge.search.records import Budgets, SearchSettings
from mnist_edge.search.space import space_for

log = logging.getLogger(__name__)

SETTINGS_ATTR = "mnist_edge_settings"
RECORD_ATTR = "record"
# A trial whose heartbeat is older than this many intervals is stale: generous, so that a
# worker busy compiling on a loaded machine is never taken for a dead one.
GRACE_INTERVALS = 4
MAX_RETRY = 3  # a trial that keeps killing its workers is given up after this many retries
OPEN_ATTEMPTS = 4  # workers started together race to create the schema: the loser retries
# Random trials before TPE models the results: a quarter of the study, 4 to 10 (a short study
# spent wholly on random draws would learn nothing about the budgets).
STARTUP_TRIALS = (4, 10)


def hide_password(url: str) -> str:
    """The URL as it may be printed: any password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: it names no password either
        return url


def _storage(url: str, heartbeat: float):
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=max(1, round(heartbeat)),
            grace_period=max(2, round(GRACE_INTERVALS * heartbeat)),
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                MAX_RETRY
            ),
        )


def trial_seeded_sampler(seed: int, trials: int):
    """Optuna's TPE whose random draws for a trial are seeded by (seed, trial number).

    Every worker of a study gets the same seed; seeded once, two workers would draw the same
    first architectures. Seeded per trial number (unique in the storage), workers draw what one
    worker with that seed draws, and never the same startup trial twice.
    """
    import numpy as np
    import optuna

    class TrialSeededTPE(optuna.samplers.TPESampler):
        def before_trial(self, study, trial):
            trial_seed = int(np.random.SeedSequence([seed, trial.number]).generate_state(1)[0])
            # TPE keeps its draws in these two (Optuna 5); reseeding them is all it takes.
            self._rng.rng.seed(trial_seed)
            self._random_sampler._rng.rng.seed(trial_seed)
            super().before_trial(study, trial)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: a worker treats the others' running trials as bad results, so it does
        # not sample next to them.
        return TrialSeededTPE(
            seed=seed,
            n_startup_trials=min(max(trials // 4, STARTUP_TRIALS[0]), STARTUP_TRIALS[1]),
            multivariate=True,
            group=True,
            constant_liar=True,
        )


def settings_payload(settings: SearchSettings) -> dict:
    return dataclasses.asdict(settings)


def settings_from(payload: dict) -> SearchSettings:
    return SearchSettings(**{**payload, "budgets": Budgets(**payload["budgets"])})


def _lost_schema_race(exc: Exception) -> bool:
    """Whether the database refused a statement another worker's concurrent creation of the same
    tables or types got in first with (a unique violation, "already exists"), not a connection."""
    from sqlalchemy.exc import DatabaseError, OperationalError

    return isinstance(exc, DatabaseError) and not isinstance(exc, OperationalError)


def open_study(
    url: str, name: str, settings: SearchSettings | None, heartbeat: float, trials: int = 0
):
    """The study `name` in the storage, created with these settings where absent. `settings`
    None only opens an existing one. A study made with other settings is refused: its trials'
    figures would not be comparable."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shown = hide_password(url)
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            storage = _storage(url, heartbeat)
            if settings is None:
                study = optuna.load_study(study_name=name, storage=storage)
            else:
                directions = ["maximize"] + ["minimize"] * (len(settings.objectives) - 1)
                study = optuna.create_study(
                    study_name=name,
                    storage=storage,
                    directions=directions,
                    sampler=trial_seeded_sampler(settings.seed, trials),
                    load_if_exists=True,
                )
            break
        except KeyError:
            raise MnistEdgeError(f"No study {name!r} in {shown}: run a search first.") from None
        except ImportError as exc:
            raise MnistEdgeError(
                f"Cannot open the study storage {shown}: {first_line(exc)} (a PostgreSQL URL "
                "takes the [search] extra's driver: postgresql+psycopg2://...)."
            ) from None
        except Exception as exc:  # SQLAlchemy's many errors: unreachable, refused, bad URL
            if attempt == OPEN_ATTEMPTS or not _lost_schema_race(exc):
                raise MnistEdgeError(
                    f"Cannot open the study storage {shown}: {first_line(exc)}"
                ) from None
            time.sleep(0.25 * attempt)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if settings is None:
        if stored is None:
            raise MnistEdgeError(f"Study {name!r} in {shown} was not written by mnist-edge search.")
        return study, settings_from(stored)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings_payload(settings))
        baseline = space_for(settings.space).baseline
        if baseline:
            # A known small member first, so that even a short study has a point near the
            # budgets to start from (skipped where another worker queued it already).
            study.enqueue_trial(baseline, skip_if_exists=True)
    elif stored != settings_payload(settings):
        differ = [k for k, v in settings_payload(settings).items() if stored.get(k) != v]
        raise MnistEdgeError(
            f"Study {name!r} in {shown} was made with other settings ({', '.join(differ)}: "
            f"{', '.join(f'{k}={stored.get(k)}' for k in differ)}): give the same options, or "
            "--study NEW_NAME for a new study."
        )
    return study, settings


def counts(study) -> Counter:
    """How many trials of the study are in each state, by the state's name."""
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def run_workers_share(
    study, objective: Callable, trials: int, heartbeat: float, on_wait: Callable | None = None
) -> None:
    """Run trials until the study has `trials` complete ones, as one of any number of workers.

    A worker takes a queued (retried) trial first, else starts a new one while complete and
    running trials fall short of the target; when the rest are running elsewhere it waits for
    them to finish or go stale (then one of the waiting workers retries them), so no worker
    leaves a trial behind that nobody will finish.
    """
    import optuna

    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        state = counts(study)
        if state["WAITING"] or state["COMPLETE"] + state["RUNNING"] < trials:
            study.optimize(objective, n_trials=1, gc_after_trial=True)
        elif state["RUNNING"]:
            if on_wait is not None:
                on_wait(state)
            time.sleep(heartbeat)
        else:
            return

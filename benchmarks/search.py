"""search's goals (issue 27), measured: a study on the micro:bit's Cortex-M0 under 4 KB of RAM and
32 KB of engine flash, the seed's CNN measured the same way, and optionally two workers on one
PostgreSQL study against one worker on SQLite.

Runs `mnist_edge.search.search` for real (training on all of MNIST's 54,000 non-held-out
training images, the MCU-lean int8 export, the C engine on the host for accuracy, the firmware
linked for the board and run in QEMU for instructions), then reads the study's records:
- floor: a trial with >= 99.0% int8 test accuracy within the budgets, its firmware bit-exact;
- goal: >= 99.0% within 2 KB of RAM and 24 KB of engine flash (code + constants);
- against the seed: a front point within 0.1 pp of the seed CNN's accuracy at <= 1/5 of its flash.
Prints the figures and the setup; writes benchmarks/results/search.json.

    python benchmarks/search.py [--trials 60] [--artifacts /tmp/search-bench]
        [--sources ../shared/third_party] [--postgres postgresql+psycopg2://postgres@/db?host=DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "search.json"
BOARD = "cortex-m0"
FLOOR = {"max_ram": 4096, "max_flash": 32768}
GOAL = {"max_ram": 2048, "max_flash": 24 * 1024}
ACCURACY = 0.99
SEED_MARGIN = 0.001  # "equal accuracy to 0.1 pp"
FLASH_FACTOR = 5


def best_within(trials, max_ram: int, max_flash: int):
    """The most accurate (test) trial that fits both limits and ran bit-exact, or None."""
    fits = [
        t
        for t in trials
        if t.fits_board
        and t.golden_identical
        and t.ram_bytes <= max_ram
        and t.flash_bytes <= max_flash
    ]
    return max(fits, key=lambda t: t.test_accuracy, default=None)


def summary(trial) -> dict | None:
    if trial is None:
        return None
    keys = ("number", "architecture", "params", "accuracy", "test_accuracy", "flash_bytes")
    extra = ("ram_bytes", "instructions", "golden_identical", "seconds")
    return {key: getattr(trial, key) for key in (*keys, *extra)}


def seed_figures(artifacts: Path, sources: Path | None, settings) -> dict:
    """The seed's CNN (fast recipe) through the very same trial."""
    from mnist_edge.data import load_mnist
    from mnist_edge.search.measure import measure
    from mnist_edge.search.space import seed_architecture

    record = measure(
        seed_architecture(), load_mnist(), settings, artifacts / "seed-cnn", sources=sources
    )
    return summary(record)


def two_workers(url: str, trials: int, artifacts: Path, sources: Path | None) -> dict:
    """Two `mnist-edge search` processes on one PostgreSQL study: trials done, none lost."""
    import optuna

    args = [sys.executable, "-m", "mnist_edge", "search", "--board", BOARD, "--storage", url]
    args += ["--study", f"bench-{int(time.time())}", "--trials", str(trials)]
    args += [f"--max-ram={FLOOR['max_ram']}", f"--max-flash={FLOOR['max_flash']}"]
    args += ["--sources", str(sources)] if sources else []
    started = time.perf_counter()
    workers = [
        subprocess.Popen([*args, "--artifacts", str(artifacts / f"worker-{i}")]) for i in (0, 1)
    ]
    codes = [w.wait() for w in workers]
    study = optuna.load_study(study_name=args[args.index("--study") + 1], storage=url)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return {
        "exit_codes": codes,
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"),
        "running": states.count("RUNNING"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--artifacts", type=Path, default=Path("/tmp/mnist-edge-search-bench"))
    parser.add_argument("--sources", type=Path, default=None)
    parser.add_argument("--postgres", default=None, help="also run two workers on this URL")
    args = parser.parse_args()

    from mnist_edge.machine import detect_machine
    from mnist_edge.search import Budgets, search

    started = time.perf_counter()
    result = search(
        args.artifacts,
        None,
        board=BOARD,
        trials=args.trials,
        budgets=Budgets(**FLOOR),
        sources=args.sources,
    )
    floor = best_within(result.trials, **FLOOR)
    goal = best_within(result.trials, **GOAL)
    seed = seed_figures(args.artifacts, args.sources, result.settings)
    beats_seed = [
        summary(t)
        for t in result.front
        if t.test_accuracy >= seed["test_accuracy"] - SEED_MARGIN
        and t.flash_bytes * FLASH_FACTOR <= seed["flash_bytes"]
    ]
    machine = detect_machine()
    report = {
        "setup": {
            "board": BOARD,
            "budgets": FLOOR,
            "trials": result.complete,
            "study": result.study,
            "storage": result.storage,
            "cpu": machine.cpu,
            "cores": os.cpu_count(),
            "versions": result.versions,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "floor": {"met": bool(floor and floor.test_accuracy >= ACCURACY), "best": summary(floor)},
        "goal": {"met": bool(goal and goal.test_accuracy >= ACCURACY), "best": summary(goal)},
        "seed_cnn": seed,
        "front_beating_seed_5x_flash": beats_seed,
        "front": [summary(t) for t in result.front],
    }
    if args.postgres:
        report["two_workers"] = two_workers(args.postgres, 8, args.artifacts, args.sources)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "front"}, indent=2, default=str))
    print(f"front: {len(result.front)} points; written to {RESULTS}")


if __name__ == "__main__":
    main()

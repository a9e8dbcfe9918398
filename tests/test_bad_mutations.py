"""Mutated models through every command that loads one: never a traceback, never a signal.

Each copy of the int8 and float32 models has a few bytes changed (a fixed seed): in the header
(the flatbuffer's root offsets and tables), near the tail (where the converter puts the tensor
and metadata tables) or anywhere. Every copy goes through predict, verify, bench and bundle in
a real process: the exit code is 0 (the change was harmless) or 2 (one line naming the file),
and never a signal or a traceback. Two commands may also exit 1, a check that ran and failed:
`verify`, when changed weights cost accuracy; `bundle`, run with `--max-arena 1`, a budget no
model meets, so a copy that loads stops there before its 10,000-image accuracy run.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

COPIES = 12  # per model: 4 copies for each of the 3 regions, 24 copies in all
REGIONS = ("header", "tail", "anywhere")
COMMANDS = {
    "predict": lambda model, images: ["predict", str(images), "-m", str(model)],
    "verify": lambda model, _: ["verify", "-m", str(model), "--limit", "20", "-r", "all"],
    "bench": lambda model, _: (
        ["bench", "-m", str(model), "--runs", "3", "--warmup", "1"]
        + ["--batch-sizes", "1", "--no-roofline", "-r", "all"]
    ),
    "bundle": lambda model, _: ["bundle", "-m", str(model), "--max-arena", "1"],
}
ALLOWED = {"predict": {0, 2}, "verify": {0, 1, 2}, "bench": {0, 2}, "bundle": {1, 2}}


def mutate(data: bytes, region: str, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(6):
        if region == "header":
            where = int(rng.integers(0, 64))
        elif region == "tail":
            where = len(out) - 1 - int(rng.integers(0, 4096))
        else:
            where = int(rng.integers(0, len(out)))
        out[where] = int(rng.integers(0, 256))
    return bytes(out)


@pytest.fixture(scope="module")
def mutated(exported, tmp_path_factory) -> list[tuple[Path, Path]]:
    """(artifacts folder, mutated copy) pairs; each folder holds the exports and one copy."""
    source, _ = exported
    rng = np.random.default_rng(2026)
    folder = tmp_path_factory.mktemp("mutated")
    pairs = []
    for name in ("model_int8.tflite", "model_float32.tflite"):
        data = (source / name).read_bytes()
        for k in range(COPIES):
            region = REGIONS[k % len(REGIONS)]
            artifacts = folder / f"{Path(name).stem}-{region}-{k}"
            artifacts.mkdir()
            for keep in ("model.keras", "reference.npz", "export.json"):
                (artifacts / keep).write_bytes((source / keep).read_bytes())
            model = artifacts / name
            model.write_bytes(mutate(data, region, rng))
            pairs.append((artifacts, model))
    return pairs


@pytest.mark.parametrize("command", list(COMMANDS))
def test_mutated_models_exit_0_or_2_with_one_line(mutated, mnist, tmp_path, command):
    images = tmp_path / "digits.npy"
    np.save(images, mnist.x_test[:3])

    def run(pair):
        artifacts, model = pair
        args = COMMANDS[command](model, images)
        if command != "predict":
            args += ["-a", str(artifacts)]
        done = subprocess.run(
            [sys.executable, "-m", "mnist_edge", "-q", *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        return model, done

    # The slower commands (bench times, bundle measures the arena) take every other copy.
    pairs = mutated if command in ("predict", "verify") else mutated[::2]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, pairs))
    outcomes = {}
    for model, done in results:
        where = f"{command} {model.parent.name}: exit {done.returncode}\n{done.stderr[-1500:]}"
        assert done.returncode >= 0, f"killed by signal {-done.returncode}: " + where
        assert done.returncode in ALLOWED[command], where
        assert "Traceback" not in done.stderr, where
        if done.returncode == 2:
            assert done.stderr.strip().count("\n") == 0, where  # one line
            assert model.name in done.stderr, where
        outcomes[done.returncode] = outcomes.get(done.returncode, 0) + 1
    # The family exercises both paths: copies refused, and copies that still load.
    assert 2 in outcomes and len(outcomes) >= 2, outcomes

"""search: the space follows the engine, trials measured on the board, the study continued,
the pick through the pipeline unchanged, bad input in one line, and two workers on a real
PostgreSQL with one killed mid-trial."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from tests.helpers import (
    SOURCES_DIR,
    assert_exit,
    entry_point,
    need_module,
    needs_arm_tools,
    needs_sources,
    skip_or_fail,
)

optuna = need_module("optuna", "search")

runner = CliRunner()
# A tiny but real trial: 2 pooled 3×3 blocks of 2-8 filters, 1 epoch on 1,000 images.
SMALL = ["--space", "small", "--train-limit", "1000", "--sources", SOURCES_DIR]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def sample_architectures(supported, count=60):
    from mnist_edge.search.space import SPACES, suggest

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    found = []
    for _ in range(count):
        trial = study.ask()
        found.append(suggest(trial, SPACES["full"], supported))
        study.tell(trial, 0.0)
    return found


def test_space_offers_only_what_the_engine_compiles():
    base = ("CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX")
    without = sample_architectures(base)
    assert not any(b.separable for a in without for b in a.blocks)
    assert {a.head for a in without} == {"flatten"}
    grown = sample_architectures((*base, "DEPTHWISE_CONV_2D", "MEAN"))
    assert any(b.separable for a in grown for b in a.blocks)
    assert {a.head for a in grown} == {"flatten", "gap"}
    assert not any(a.blocks[0].separable for a in grown)  # one input channel


@pytest.mark.slow
def test_each_choice_converts_to_the_operators_it_names(mnist):
    from mnist_edge.export import convert_tflite_int8
    from mnist_edge.model import NUM_PARAMS
    from mnist_edge.model_info import read_model
    from mnist_edge.search.space import (
        CHOICE_OPS,
        Architecture,
        Block,
        build_keras,
        seed_architecture,
    )

    assert build_keras(seed_architecture()).count_params() == NUM_PARAMS  # the seed is a member
    plain = Architecture((Block(4, 3, "pool"), Block(4, 3, "stride")), "flatten", 0, 1, 6e-3)
    variants = {
        "separable": Architecture(
            (Block(4, 3, "pool"), Block(4, 3, "stride", separable=True)), "flatten", 0, 1, 6e-3
        ),
        "gap": Architecture(plain.blocks, "gap", 0, 1, 6e-3),
    }

    def ops(arch):
        info = read_model(convert_tflite_int8(build_keras(arch), mnist.x_train[:8], batch=1))
        return {op.op for op in info.operators}

    base = ops(plain)
    for choice, arch in variants.items():
        found = ops(arch)
        assert found - base <= set(CHOICE_OPS[choice]), choice
        assert set(CHOICE_OPS[choice]) <= found, choice


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-ram", "0"], "Invalid --max-ram 0"),
        (["--board", "cortex-m99"], "Unknown CPU 'cortex-m99'"),
        (["--min-accuracy", "99"], "expected a fraction"),
        (["--space", "huge"], "Unknown search space 'huge'"),
        (
            ["--storage", "postgresql+psycopg2://nobody@/none?host=/nonexistent"],
            "Cannot open the study storage postgresql",
        ),
        (["--storage", "nosuchdb://x"], "Cannot open the study storage"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = invoke("search", "--artifacts", tmp_path, "--trials", "1", *args)
    assert_exit(result, 2)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def figures_from_pipeline(picked: Path) -> dict:
    """The picked model through export --int8, verify -r codegen and firmware (cortex-m0)."""
    assert_exit(invoke("export", "--int8", "--artifacts", picked), 0)
    model = picked / "model_int8_mcu.tflite"
    verify = invoke("verify", "-a", picked, "-m", model, "-r", "codegen", "--json")
    assert_exit(verify, 0)
    row = next(r for r in json.loads(verify.stdout)["results"] if r["runtime"] == "codegen")
    firmware = invoke(
        "firmware", "-a", picked, "--engine", "codegen", "--cpu", "cortex-m0",
        "--optimise", "size", "--sources", SOURCES_DIR, "--json",
    )  # fmt: skip
    assert_exit(firmware, 0)
    fw = json.loads(firmware.stdout)["results"][0]
    return {
        "model_sha256": fw["model_sha256"],
        "test_accuracy": row["accuracy"],
        "flash_bytes": fw["flash"]["engine_code"] + fw["flash"]["engine_constants"],
        "ram_bytes": fw["ram"]["engine_buffers"] + fw["ram"]["stack"],
        "instructions": fw["instructions_per_inference"],
    }


@needs_sources
@needs_arm_tools
@pytest.mark.slow
def test_search_continues_and_its_pick_flows_through_the_pipeline(tmp_path):
    artifacts = tmp_path / "artifacts"
    first = invoke("search", "--artifacts", artifacts, *SMALL, "--trials", "1", "--json")
    assert_exit(first, 0)
    assert [t["number"] for t in json.loads(first.stdout)["trials"]] == [0]
    # A second run of the same study goes on where the first stopped.
    second = invoke("search", "--artifacts", artifacts, *SMALL, "--trials", "2", "--json")
    assert_exit(second, 0)
    result = json.loads(second.stdout)
    assert [t["number"] for t in result["trials"]] == [0, 1]
    assert json.loads((artifacts / "search.json").read_text())["complete"] == 2
    other = invoke("search", "--artifacts", artifacts, *SMALL, "--trials", "2", "--seed", "1")
    assert_exit(other, 2)
    assert "other settings (seed" in other.stderr

    picked = invoke("search", "--artifacts", artifacts, *SMALL, "--trials", "2", "--pick")
    assert_exit(picked, 0)
    record = json.loads((artifacts / "picked" / "picked.json").read_text())
    assert record["number"] == result["front"][0]["number"]
    assert record["test_images"] == 10_000 and record["golden_identical"]
    assert (Path(record["folder"]) / "trial.json").is_file()  # every trial keeps its record
    measured = figures_from_pipeline(artifacts / "picked")
    assert measured == {key: record[key] for key in measured}
    # The report of a folder that holds a search shows its front and scatter chart.
    shutil.copy(artifacts / "search.json", artifacts / "picked")
    assert_exit(invoke("report", "--artifacts", artifacts / "picked", "--json"), 0)
    page = (artifacts / "picked" / "report.html").read_text()
    search = page[page.index("<h2>Search</h2>") :]
    assert f"<td>{record['architecture']}</td>" in search and "<img" in search


@needs_sources
@needs_arm_tools
@pytest.mark.slow
def test_a_study_with_no_feasible_trial_exits_1(tmp_path):
    limits = ["--max-flash", "1000", "--no-run", "--eval-limit", "200"]
    result = invoke("search", "--artifacts", tmp_path, *SMALL, "--trials", "1", *limits)
    assert_exit(result, 1)
    assert "none of the 1 complete trials meets the budgets" in result.stderr
    trial = json.loads((tmp_path / "search.json").read_text())["trials"][0]
    assert trial["violations"]["flash"] == trial["flash_bytes"] - 1000


class Postgres:
    """A real PostgreSQL server on a Unix socket in a temporary folder, owned by `postgres`."""

    def __init__(self, folder: Path):
        self.data, self.socket = folder / "data", folder / "socket"
        for path in (folder, self.data, self.socket):
            path.mkdir(exist_ok=True)
            shutil.chown(path, "postgres", "postgres")

    def run(self, *command: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    def start(self) -> str:
        self.run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "--no-sync")
        options = f"-k {self.socket} -c listen_addresses='' -c fsync=off"
        # -l: the server's output to a file, not to our pipes, which would then never close.
        log = str(self.data.parent / "server.log")
        pg_ctl = str(PG_BIN / "pg_ctl")
        self.run(pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        self.run(str(PG_BIN / "createdb"), "-h", str(self.socket), "-U", "postgres", "studies")
        return f"postgresql+psycopg2://postgres@/studies?host={self.socket}"

    def stop(self) -> None:
        self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture()
def postgres():
    need_module("psycopg2", "search")
    if not (PG_BIN / "postgres").is_file():
        skip_or_fail("PostgreSQL 15 (apt-get install postgresql)")
    if os.geteuid() != 0:
        skip_or_fail("root, to run PostgreSQL as its postgres user")
    # Not under pytest's folders: those are the tests' user's alone, and a socket's path must
    # stay short (107 bytes).
    folder = Path(tempfile.mkdtemp(prefix="mnist-edge-pg-"))
    server = Postgres(folder)
    url = server.start()
    yield url
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def study_exists(storage: str, study: str) -> bool:
    """Whether a worker has created the study, asked without creating Optuna's schema (which
    opening a storage does, and which the workers are busy creating)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(storage)
    try:
        with engine.connect() as connection:
            query = sqlalchemy.text("SELECT 1 FROM studies WHERE study_name = :name")
            return connection.execute(query, {"name": study}).first() is not None
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def running_trial_of(storage: str, study: str, pid: int):
    if not study_exists(storage, study):
        return None
    found = optuna.load_study(study_name=study, storage=storage)
    for trial in found.get_trials(deepcopy=False):
        if trial.state.name == "RUNNING" and trial.user_attrs.get("worker", "").endswith(f":{pid}"):
            return trial.number
    return None


@needs_sources
@needs_arm_tools
@pytest.mark.slow
def test_two_workers_on_postgres_one_killed_mid_trial(tmp_path, postgres):
    trials = 2
    args = [
        entry_point(), "search", "--storage", postgres, "--study", "pg", *SMALL,
        "--trials", str(trials), "--eval-limit", "200", "--no-run", "--heartbeat", "1",
    ]  # fmt: skip
    # Both start at once on an empty database: one loses the race for the schema and retries.
    workers = [
        subprocess.Popen(
            [*map(str, args), "--artifacts", str(tmp_path / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    victim, survivor = workers
    deadline = time.monotonic() + 60
    while running_trial_of(postgres, "pg", victim.pid) is None:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the first worker never started a trial"
        time.sleep(0.2)
    killed = running_trial_of(postgres, "pg", victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err[-3000:]

    every = optuna.load_study(study_name="pg", storage=postgres).get_trials(deepcopy=False)
    states = {t.number: t.state.name for t in every}
    assert set(states.values()) <= {"COMPLETE", "FAIL"}, states  # none running, none queued
    assert states[killed] == "FAIL"
    retries = [t.system_attrs["failed_trial"] for t in every if "failed_trial" in t.system_attrs]
    assert retries == [killed]  # retried once, by the survivor
    retry = next(t for t in every if t.system_attrs.get("failed_trial") == killed)
    assert retry.state.name == "COMPLETE"
    assert retry.params == next(t for t in every if t.number == killed).params
    assert sum(s == "COMPLETE" for s in states.values()) == trials
    assert f"{trials} complete trials" in out

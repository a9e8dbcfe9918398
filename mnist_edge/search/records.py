"""What a search writes down: its settings and budgets, each trial's measurements (trial.json,
and the same object in the trial's Optuna user attributes), and the result (search.json)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Budgets:
    """The hard limits a trial must meet to be feasible (None: no limit)."""

    max_ram: int | None = None  # bytes: the engine's plan + the stack's measured peak
    max_flash: int | None = None  # bytes: the engine's code and constants, from the link
    max_instructions: int | None = None  # per inference, counted in QEMU
    min_accuracy: float | None = None  # int8 accuracy on the held-out training images


@dataclass(frozen=True)
class SearchSettings:
    """What makes two trials' figures comparable: a study keeps the ones it was created with."""

    board: str  # the CPU name of firmware's board table: cortex-m0
    space: str
    budgets: Budgets
    seed: int
    train_limit: int | None  # training images (of the 54,000 not held out); None: all
    eval_limit: int | None  # held-out and test images scored; None: all 6,000 and 10,000
    epochs: int | None  # fixed epochs instead of the space's; None: the space's
    run: bool  # run the firmware in QEMU (instructions); False: link only
    firmware_images: int  # test images the firmware runs and checks against host TFLM

    @property
    def objectives(self) -> tuple[str, ...]:
        return ("accuracy", "flash", "instructions") if self.run else ("accuracy", "flash")


@dataclass(frozen=True)
class TrialRecord:
    """One architecture trained, exported, compiled and measured on the board."""

    number: int  # the Optuna trial's
    architecture: str  # in one line (space.Architecture.describe)
    spec: dict  # the architecture as data (space.Architecture.as_dict)
    params: int
    macs: int
    accuracy: float  # int8, C engine on the host, held-out training images: the objective
    test_accuracy: float  # int8, C engine on the host, the test images: what is reported
    held_out_images: int
    test_images: int
    model_sha256: str  # of model_int8_mcu.tflite
    tflite_bytes: int
    arena_bytes: int  # the C engine's memory plan
    fits_board: bool  # linked for the board (False: the board's RAM or flash overflowed)
    flash_bytes: int | None  # engine code + constants, from the link
    ram_bytes: int | None  # plan + stack (measured peak when run, else the reservation)
    stack_bytes: int | None
    harness_flash_bytes: int | None  # the test harness's code and libc: not the engine's
    instructions: int | None  # per inference, median over the firmware's images (QEMU)
    golden_identical: bool | None  # the firmware's outputs equal host TFLM's, bit for bit
    violations: dict[str, float] = field(default_factory=dict)  # budget -> amount over
    reason: str = ""  # why it was not measured on the board, when it was not
    worker: str = ""  # host:pid that ran it
    folder: str = ""  # its files (model.keras, the exports, firmware/) on that host
    seconds: float = 0.0

    @property
    def feasible(self) -> bool:
        return self.fits_board and not self.violations


@dataclass(frozen=True)
class SearchResult:
    """The study after this run: counts, the feasible Pareto front, and the pick if any."""

    study: str
    storage: str  # the URL, password hidden
    settings: SearchSettings
    complete: int
    failed: int
    retried: int  # failed trials given to another run (heartbeat gone stale)
    running: int
    feasible: int
    front: list[TrialRecord]  # by accuracy, best first
    trials: list[TrialRecord]  # every complete trial, by number
    picked: TrialRecord | None = None
    picked_to: str | None = None  # the artifacts folder its model.keras was written to
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)

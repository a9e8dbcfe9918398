"""Commands as a user runs them: the installed `mnist-edge` script as a real process, in the
tests' environment (conftest.py's caches), each printing its human table on stdout.

CliRunner calls the commands in-process; these runs also go through the console script, the
process's own stdout (rich without a terminal), its exit status and its imports from cold.
`bundle` runs so in test_bundle.py (where verify's rows spare it TFLM on 10,000 images), and
`bundle --prove tflite-runtime-2.14` in test_proofs.py (marked proof).
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.helpers import SOURCES_DIR, assert_ran, needs_arm_tools, needs_sources, run_command


def table_rows(stdout: str) -> dict[str, list[str]]:
    """A rich table's body rows as printed, by their first cell: the cells, stripped."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            rows.setdefault(cells[0], cells)
    return rows


def test_data_prints_its_table(mnist):
    done = run_command("data")
    assert_ran(done)
    assert not done.stdout.lstrip().startswith("{")  # the table, not JSON
    assert "MNISTfrom" in "".join(done.stdout.split())  # the title, wrapped anywhere
    rows = table_rows(done.stdout)
    histogram = [str(int((mnist.y_test == digit).sum())) for digit in range(10)]
    assert rows["test"] == ["test", "10,000", *histogram]
    assert rows["train"][:2] == ["train", "60,000"]


@pytest.mark.slow
def test_report_prints_its_table_and_writes_the_page(exported_copy, trained):
    # The export's record and the training's: no others (tests may have added some before).
    for name in ("verify.json", "bench.json"):
        (exported_copy / name).unlink(missing_ok=True)
    shutil.rmtree(exported_copy / "bundle", ignore_errors=True)
    shutil.copy(trained[0] / "train.json", exported_copy / "train.json")
    done = run_command("report", "--artifacts", exported_copy)
    assert_ran(done)
    page = exported_copy / "report.html"
    assert page.is_file() and "</html>" in page.read_text()
    assert f"Wrote{page}" in "".join(done.stdout.split())  # the title, wrapped anywhere
    rows = table_rows(done.stdout)
    assert list(rows) == [
        "Training",
        "Exports",
        "missing: verify.json",
        "missing: bench.json",
        "missing: bundle/manifest.json",
    ]


@pytest.mark.slow
@needs_sources
@needs_arm_tools
def test_firmware_prints_its_table(exported_copy):
    """Three images on one board: a relink against TFLM's library from the cache (a clean one
    takes minutes on 2 cores, shared with test_firmware.py), and a run in QEMU."""
    shutil.rmtree(exported_copy / "bundle", ignore_errors=True)  # its model: the MCU-lean one
    done = run_command(
        "firmware",
        "--artifacts",
        exported_copy,
        "--cpu",
        "cortex-m4",
        "--kernels",
        "cmsis-nn",
        "--images",
        "3",
        "--sources",
        SOURCES_DIR,
    )
    assert_ran(done)
    title = "".join(done.stdout.split())  # wrapped anywhere, even inside a word
    assert "Firmwareformodel_int8_mcu.tflite" in title and ":3testimages" in title
    assert "arm-none-eabi-gcc" in title and "QEMUemulatorversion" in title
    cells = table_rows(done.stdout)["cortex-m4"]
    assert cells[:4] == ["cortex-m4", "tflm", "cmsis-nn", "3/3"]  # bit-exact with host TFLM
    record = json.loads((exported_copy / "firmware" / "firmware.json").read_text())
    (result,) = record["results"]
    assert cells[4] == f"{result['instructions_per_inference']:,}"
    assert (exported_copy / "firmware" / "cortex-m4-cmsis-nn" / "firmware.elf").is_file()

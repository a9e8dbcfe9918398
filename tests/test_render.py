"""render: tables and JSON for the terminal, from typed records only."""

from __future__ import annotations

import json

from rich.console import Console

from mnist_edge.render import format_bytes, to_json, verify_table
from tests.test_records import verify_report


def test_format_bytes():
    assert format_bytes(900) == "900 B"
    assert format_bytes(105_152) == "102.7 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"


def test_a_table_and_the_json_say_the_same():
    report = verify_report()
    console = Console(width=200, record=True)
    console.print(verify_table(report))
    text = console.export_text()
    assert "model_int8.tflite" in text and "0.9900" in text and "-0.03" in text
    assert json.loads(to_json(report))["results"][0]["accuracy"] == 0.99

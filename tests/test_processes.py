"""processes.stream: the one way builds and installs run with their output streamed."""

from __future__ import annotations

import time

import pytest

from mnist_edge.errors import MnistEdgeError
from mnist_edge.processes import stream


def test_lines_arrive_in_order_with_stderr_merged_and_the_exit_status():
    seen = []
    code, lines = stream(["sh", "-c", "echo one; echo two >&2; echo three; exit 3"], seen.append)
    assert code == 3 and lines == ["one", "two", "three"] and seen == lines


def test_the_environment_is_the_one_given():
    code, lines = stream(["sh", "-c", "echo $MNIST_EDGE_PROBE"], env={"MNIST_EDGE_PROBE": "x1"})
    assert (code, lines) == (0, ["x1"])


def test_a_missing_program_is_one_line():
    with pytest.raises(MnistEdgeError, match="Cannot run /no/such/program"):
        stream(["/no/such/program"])


def test_an_interruption_stops_the_child_and_what_it_started(tmp_path):
    """An exception from on_line (as Ctrl-C would be) kills the whole process group: the
    grandchild that would write a file after 1 s never does."""
    marker = tmp_path / "survived"
    script = f"(sleep 1; touch {marker}) & echo started; wait"

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        stream(["sh", "-c", script], interrupt)
    assert time.monotonic() - started < 1
    time.sleep(2)
    assert not marker.exists(), "a process of the group outlived the interruption"

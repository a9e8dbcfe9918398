"""The documented examples still print what the pages show, and the pages hold together.

An example in README.md or docs/*.md is an HTML comment naming it, then a console block whose
first line is `$ COMMAND` and the rest what the command printed (stdout and stderr in order, as a
terminal shows them), all written by `make docs` (tools/docs.py: its EXAMPLES table gives each
name its command, the example whose work folder it starts from, and what in its output varies).
Here every documented command runs again, in-process through typer's CliRunner, in a work folder
whose `artifacts/` is the default `--artifacts`: examples that start from `train` or `export`
start from the session's small model instead (conftest's `trained` and `exported`, so nothing is
trained twice), the others from the folder the example before them left (run here once), as in
the real run.

The comparison is Polygraphy's (`tests/test_examples.py` there runs every command block of an
example's README and compares the expected output line by line, skipping the lines that carry a
marker), with the markers as rules, so that the pages show real, unedited output. Both sides are
normalized the same way, then must be equal line for line:

- masked: every number becomes `#` (figures depend on the model, the machine and the clock), every
  hexadecimal digest of 12 or more digits `#`, every absolute path `<path>`;
- runs of blanks and of table rules (━ ─) become one: a column is as wide as its widest value;
- a table row whose first cell is empty continues the row above (rich wrapped a long cell), and
  consecutive lines outside a table are one paragraph (rich wrapped a title or a note): each is
  joined into one line first, so a figure one digit longer cannot move a line break;
- left out: output lines matching tools/docs.py's CACHE_LINES (what a cold or busy cache adds:
  "extracting ...", "waiting for another ...", matched before anything is joined), and joined lines
  matching the example's `optional` patterns (a table row one machine prints and another not);
- masked as `…`: matches of the example's `vary` patterns in the joined lines (the CPU's name and
  flags, the toolchain's versions), before the numbers.

The exit code must be the documented one. When an example fails here, `tools/docs.py --only NAME`
(or `make docs`) rewrites it from a real run: read the page's diff before committing it.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import tflm_served_from
from tests.helpers import SOURCES_DIR, needs_sources

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250


def _load_docs_tool():
    spec = importlib.util.spec_from_file_location("mnist_edge_docs_tool", REPO / "tools/docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


docs = _load_docs_tool()
DOCUMENTED = docs.documented()

# --- normalization ---------------------------------------------------------------------------

PATH = re.compile(r"(?<![\w.])/[\w.+-][\w./+-]*")
DIGEST = re.compile(r"\b[0-9a-f]{12,}\b")
NUMBER = re.compile(r"(?<![\w.])[-+]?\d(?:[\d,]*\d)?(?:\.\d+)*(?:e[-+]?\d+)?(?!\w)")
RULES = re.compile(r"([━─═])\1+")
BLANKS = re.compile(r"\s+")
ROW = "│┃"
BORDER = "┏┡└┗┌├╞"


def mask(line: str) -> str:
    """A line with its variable parts masked and its blanks and rules collapsed."""
    line = NUMBER.sub("#", DIGEST.sub("#", PATH.sub("<path>", line)))
    return BLANKS.sub(" ", RULES.sub(r"\1", line)).strip()


def cells(line: str) -> list[str]:
    return re.split(f"[{ROW}]", line.strip())[1:-1]


def normalize(text: str, vary: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> list[str]:
    """The lines of an output as the comparison sees them (the module docstring's rules)."""
    dropped = [re.compile(p) for p in docs.CACHE_LINES]
    out: list[str] = []
    kinds: list[str] = []  # "row", "border" or "text", per line of out
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or any(p.search(stripped) for p in dropped):
            continue
        if stripped[0] in ROW:
            row = cells(stripped)
            if kinds and kinds[-1] == "row" and not row[0].strip():
                above = cells(out[-1])
                if len(above) == len(row):
                    row = [f"{a} {b}" for a, b in zip(above, row, strict=True)]
                    out.pop(), kinds.pop()
            out.append("│" + "│".join(row) + "│")
            kinds.append("row")
        elif stripped[0] in BORDER:
            out.append(stripped)
            kinds.append("border")
        elif kinds and kinds[-1] == "text":
            out[-1] += " " + stripped
        else:
            out.append(stripped)
            kinds.append("text")
    for pattern in vary:
        out = [re.sub(pattern, "…", line) for line in out]
    out = [line for line in out if not any(re.search(p, line) for p in optional)]
    return [mask(line) for line in out]


# --- running an example ----------------------------------------------------------------------


def split_block(body: str) -> tuple[str, str]:
    """A documented block's command (its `$ ` line) and the output under it."""
    first, _, rest = body.partition("\n")
    assert first.startswith("$ "), f"an example block starts with `$ COMMAND`, not {first!r}"
    return first[2:], rest


class Workspace:
    """Work folders: each example runs in a copy of the folder the one it starts from left."""

    def __init__(self, root: Path, starts: dict[str, Path], mnist) -> None:
        self.root = root
        self.root.mkdir()
        self.starts = starts  # examples replaced by the session's fixtures
        self.mnist = mnist
        self.left: dict[str, tuple] = {}  # each example run here: (its folder, CliRunner's result)

    def folder_for(self, example) -> Path:
        folder = self.root / f"{len(list(self.root.iterdir())):02}-{example.name}"
        if example.start is None:
            (folder / "artifacts").mkdir(parents=True)
        else:
            shutil.copytree(self.source(example.start), folder, symlinks=True)
        if example.digits:
            docs.write_digits(folder, self.mnist.x_test)
        return folder

    def source(self, name: str) -> Path:
        if name in self.starts:
            return self.starts[name]
        example = docs.EXAMPLES[name]
        if name not in self.left:
            self.run(example)
        folder, result = self.left[name]
        if result.exit_code != example.exit_code:
            pytest.fail(
                f"`{example.command}`, which this example starts from, exited "
                f"{result.exit_code}:\n{result.output[-3000:]}"
            )
        return folder

    def run(self, example):
        """Run an example's command in a fresh folder; CliRunner's result."""
        from typer.testing import CliRunner

        from mnist_edge.cli import app

        folder = self.folder_for(example)
        env = {"MNIST_EDGE_FIRMWARE_SOURCES": str(SOURCES_DIR)} if example.sources else {}
        here = Path.cwd()
        os.chdir(folder)
        try:
            result = CliRunner().invoke(app, shlex.split(example.command)[1:], env=env)
        finally:
            os.chdir(here)
        self.left[example.name] = folder, result
        return result


@pytest.fixture(scope="module")
def workspace(request, tmp_path_factory, trained, exported, mnist):
    """The examples' work folders; `train` and `export` are the session's small model. Where
    this session already ran TFLM on the test images of a model (conftest's tflm_reference), the
    product's TFLM runner answers from those outputs (tflm_served_from): `bundle` and
    `verify -r codegen` then skip half a minute of reference kernels."""
    root = tmp_path_factory.mktemp("docs")
    train, export = root / "train", root / "export"
    shutil.copytree(trained[0], train / "artifacts")
    shutil.copytree(exported[0], export / "artifacts")
    shutil.copy(trained[0] / "train.json", export / "artifacts" / "train.json")
    space = Workspace(root / "runs", {"train": train, "export": export}, mnist)
    if importlib.util.find_spec("tflite_micro") is None:
        yield space
        return
    with tflm_served_from(request.getfixturevalue("tflm_reference")):
        yield space


def example_params():
    for name in docs.EXAMPLES:
        if name not in DOCUMENTED:
            continue
        # What it needs, and what the examples it starts from need.
        run = [docs.EXAMPLES[n] for n in docs.chain([name])]
        tools = sorted({tool for e in run for tool in e.tools})
        marks = [pytest.mark.needs_tools(*tools)] if tools else []
        if any(e.sources for e in run):
            marks.append(needs_sources)
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(example_params()))
def test_example_prints_what_the_page_shows(name: str, workspace: Workspace):
    example = docs.EXAMPLES[name]
    result = workspace.run(example)
    escaped = result.exception
    assert escaped is None or isinstance(escaped, SystemExit), (
        f"{type(escaped).__name__} escaped `{example.command}`: {escaped}\n{result.output}"
    )
    assert result.exit_code == example.exit_code, (result.exit_code, result.output)
    actual = normalize(docs.terminal_text(result.output), example.vary, example.optional)
    for page, body in DOCUMENTED[name]:
        command, shown = split_block(body)
        expected = normalize(shown, example.vary, example.optional)
        diff = "\n".join(difflib.unified_diff(expected, actual, "page", "now", lineterm=""))
        assert expected == actual, (
            f"{page.relative_to(REPO)}: `{command}` no longer prints what the page shows "
            f"(normalized; `tools/docs.py --only {name}` rewrites it):\n{diff}"
        )


# --- the pages hold together -------------------------------------------------------------------


def test_every_documented_example_is_known_and_shown_once():
    assert set(DOCUMENTED) <= set(docs.EXAMPLES), "a page names an example tools/docs.py lacks"
    for name, blocks in DOCUMENTED.items():
        assert len(blocks) == 1, f"example {name} is shown {len(blocks)} times"
        command, shown = split_block(blocks[0][1])
        assert command == docs.EXAMPLES[name].command, (name, command)
        assert shown.strip(), f"example {name} has no output: run tools/docs.py --only {name}"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_link_in_the_pages_resolves():
    broken = []
    for page in docs.PAGES:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and resolved.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", resolved.read_text(), re.MULTILINE)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, broken


def test_readme_links_every_page_under_docs():
    readme = (REPO / "README.md").read_text()
    missing = [
        p.name for p in sorted((REPO / "docs").glob("*.md")) if f"(docs/{p.name})" not in readme
    ]
    assert not missing, f"README.md links no docs/{missing}"


def test_the_layout_page_lists_the_package_as_it_is():
    [(page, body)] = docs.documented(kind="generated")["layout"]
    assert body == docs.layout(), (
        f"{page.relative_to(REPO)} lists another package than mnist_edge/ is now: "
        "tools/docs.py --only layout rewrites it"
    )


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        (
            "  Trained 93,322 parameters in 6.5 s: test\n      accuracy 0.9710  ",
            ["Trained # parameters in # s: test accuracy #"],
        ),
        ("MNIST from /root/.cache/mnist-edge", ["MNIST from <path>"]),
        ("│ a │ 1 │\n│   │ 2 │", ["│ a │ # # │"]),
        ("┏━━━┳━━┓", ["┏━┳━┓"]),
        ("golden 10/10, sha 1db8505adc23e169, -0.06 pp", ["golden #/#, sha #, # pp"]),
        ("extracting CMSIS-NN-4ab83cc.tar.gz\nkept", ["kept"]),
        ("│ proven x │ a │\n│ kept    │ b │", ["│ kept │ b │"]),
        ("AMD EPYC (x86_64, 2 cores; avx2)\n table", ["… table"]),
    ],
)
def test_normalize(text, normalized):
    vary, optional = (r"[^)]*\(x86_64[^)]*\)",), (r"^│ proven ",)
    assert normalize(text, vary, optional) == normalized

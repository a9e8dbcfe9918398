#!/usr/bin/env python3
"""Write every example output in README.md and docs/*.md from one small real run (`make docs`).

A page shows an example as an HTML comment naming it, then a console block that this script
fills (a terminal's view: stdout and stderr in the order they were printed):

    <!-- example: verify -->
    ```console
    $ mnist-edge verify
    ...
    ```

The name is a key of EXAMPLES below: the command, typed as a user types it, and the example whose
work folder it starts from (a copy). So the examples are one pipeline, `make demo`'s, run small
(the first 10,000 training images): each in a work folder whose `artifacts/` is the commands'
default `--artifacts`, MNIST from the usual place ($MNIST_EDGE_DATA, else the cache), the pinned
firmware sources from `--sources` ($MNIST_EDGE_FIRMWARE_SOURCES, else ../shared/third_party).

    tools/docs.py                  every example, every page rewritten
    tools/docs.py --only firmware  that example's block only (the examples it starts from run too)
    tools/docs.py --list           the examples, their commands and pages

It says which outputs are wider than 100 columns. tests/test_docs.py runs the same commands and
compares what they print with the pages (its docstring has the rules).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
WIDTH = 100  # the terminal width the pages' examples should fit

# Progress lines that come and go with the state of a cache (or another process holding it), not
# with the command: left out of the comparison on both sides (tests/test_docs.py), every example.
CACHE_LINES = (
    r"^extracting \S+\.tar\.gz$",
    r"^downloading ",
    r"^Downloading ",
    r"^Fetching ",
    r"Keras' mnist.npz is unreachable",
    r"^waiting for another ",
    r"^compiling .*: \d+ files on \d+ cores$",
    r"^compiled .* in \d+ s$",
    r": \d+/\d+ files$",
    r"^Loading the exports in tflite-runtime ",  # where the cache has its venv
)


@dataclass(frozen=True)
class Example:
    """One documented command: what to run, from which state, and what in its output varies."""

    name: str
    command: str
    start: str | None = None  # the example whose work folder this one starts from (a copy)
    exit_code: int = 0
    digits: bool = False  # write digits/ and batch.npy (MNIST test images) into the work folder
    # Regular expressions for what differs from machine to machine (the CPU, the toolchain): their
    # matches are masked in the comparison (tests/test_docs.py).
    vary: tuple[str, ...] = ()
    # Regular expressions for lines (table rows, paragraphs) that one machine prints and another
    # does not (a runtime the cache holds or not): left out of the comparison.
    optional: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()  # programs it needs (the test skips without them)
    sources: bool = False  # needs the pinned firmware source archives


# Examples that build or run firmware, or the C engine (cc): the programs they need.
ARM = ("arm-none-eabi-gcc", "qemu-system-arm")
TOOLCHAIN = (r"arm-none-eabi-gcc \(.*?QEMU emulator version \S+(?: \([^)]*\))?",)

EXAMPLES = {
    e.name: e
    for e in (
        Example("data", "mnist-edge data"),
        Example("train", "mnist-edge train --limit 10000"),
        Example("export", "mnist-edge export --int8", start="train"),
        Example("verify", "mnist-edge verify -m artifacts/model_int8.tflite", start="export"),
        Example(
            "bench",
            "mnist-edge bench -m artifacts/model_int8.tflite --batch-sizes 1",
            start="verify",
            vary=(r"[^)]*\((?:x86_64|aarch64|arm64)\b[^)]*\)",),  # the CPU and its flags
        ),
        Example(
            "predict",
            "mnist-edge predict digits batch.npy",
            start="export",
            exit_code=1,  # the empty file is skipped
            digits=True,
        ),
        Example(
            "firmware",
            "mnist-edge firmware --engine codegen --images 20",
            start="bench",
            vary=TOOLCHAIN,
            tools=ARM,
            sources=True,
        ),
        Example(
            "firmware-all",
            "mnist-edge firmware --engine all --images 20",
            start="bench",
            vary=TOOLCHAIN,
            tools=ARM,
            sources=True,
        ),
        Example(
            "bundle",
            "mnist-edge bundle",
            start="firmware-all",
            # tflite-runtime 2.14: proven where the cache has its venv, else expected to load
            vary=(r"tflite-runtime 2\.14\.0: [^│]*",),
            optional=(r"^│ proven tflite-runtime ",),
            tools=("cc",),
            sources=True,
        ),
        Example("bundle-gate", "mnist-edge bundle --max-arena 16384", start="export", exit_code=1),
        Example("report", "mnist-edge report", start="bundle"),
        Example(
            "verify-codegen",
            "mnist-edge verify -m artifacts/model_int8_mcu.tflite -r codegen --limit 1000",
            start="export",
            tools=("cc",),
            sources=True,
        ),
        Example(
            "firmware-m0",
            "mnist-edge firmware --engine codegen --cpu cortex-m0 --images 100",
            start="export",
            vary=TOOLCHAIN,
            tools=ARM,
            sources=True,
        ),
        Example("npu", "mnist-edge bench --target ethos-u55-128", start="export"),
    )
}

# `<!-- example: NAME -->` or `<!-- generated: NAME -->`, then a fenced block whose body is ours.
MARKER = re.compile(
    r"(?P<head><!-- (?P<kind>example|generated): (?P<name>[\w-]+) -->\n```\w*\n)"
    r"(?P<body>.*?)(?P<tail>^```$)",
    re.DOTALL | re.MULTILINE,
)


def documented(pages=PAGES, kind: str = "example") -> dict[str, list[tuple[Path, str]]]:
    """Every block of that kind in the pages: name -> [(page, the block's body), ...]."""
    found: dict[str, list[tuple[Path, str]]] = {}
    for page in pages:
        for match in MARKER.finditer(page.read_text()):
            if match["kind"] == kind:
                found.setdefault(match["name"], []).append((page, match["body"]))
    return found


def first_sentence(path: Path) -> str:
    """A module's docstring, its first sentence."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?\.)(?:\s|$)", paragraph)
    return match[1] if match else paragraph


def layout() -> str:
    """The package, module by module with its docstring's first sentence, and its templates."""
    package = REPO / "mnist_edge"
    lines = ["mnist_edge/"]

    def entry(depth: int, name: str, text: str) -> None:
        indent = "  " * depth
        lead = f"{indent}{name:<{max(26 - len(indent), len(name) + 1)}}"
        lines.extend(
            textwrap.wrap(text, WIDTH, initial_indent=lead, subsequent_indent=" " * len(lead))
            or [lead.rstrip()]
        )

    def walk(folder: Path, depth: int) -> None:
        for path in sorted(folder.glob("*.py")):
            entry(depth, path.name, first_sentence(path))
        templates = folder / "templates"
        if templates.is_dir():
            files = sorted(
                str(f.relative_to(templates)) for f in templates.rglob("*") if f.is_file()
            )
            entry(depth, "templates/", ", ".join(files))
        for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file()):
            lines.append(f"{'  ' * depth}{sub.name}/")
            walk(sub, depth + 1)

    walk(package, 1)
    return "\n".join(lines) + "\n"


GENERATED = {"layout": layout}


def chain(names) -> list[str]:
    """The examples to run for `names`, each after the one it starts from, each once."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in EXAMPLES:
            raise SystemExit(f"no example {name!r}; known: {', '.join(EXAMPLES)}")
        start = EXAMPLES[name].start
        if start:
            visit(start)
        if name not in order:
            order.append(name)

    for name in names:
        visit(name)
    return order


def write_digits(folder: Path, x_test) -> None:
    """What the predict example classifies: MNIST test images 0, 1 and 4 as PNGs (as they are,
    inverted to black on white at 280×280, on a transparent background), an empty file, and
    test images 2 and 3 as one .npy array."""
    import numpy as np
    from PIL import Image

    digits = folder / "digits"
    digits.mkdir(parents=True, exist_ok=True)
    Image.fromarray(x_test[0]).save(digits / "test0_label7.png")
    inverted = Image.fromarray(255 - x_test[1]).resize((280, 280), Image.Resampling.BILINEAR)
    inverted.save(digits / "test1_label2_inverted.png")
    white = np.full_like(x_test[4], 255)
    rgba = np.stack([white, white, white, x_test[4]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(digits / "test4_label4_rgba.png")
    (digits / "empty.png").write_bytes(b"")
    np.save(folder / "batch.npy", x_test[2:4])


def default_sources() -> Path | None:
    """The pinned source archives: $MNIST_EDGE_FIRMWARE_SOURCES, else ../shared/third_party."""
    given = os.environ.get("MNIST_EDGE_FIRMWARE_SOURCES")
    folder = Path(given) if given else REPO.parent / "shared" / "third_party"
    return folder if folder.is_dir() else None


class ExampleFailed(Exception):
    """An example's command did not exit as documented."""


def run_example(example: Example, folder: Path, sources: Path | None) -> tuple[str, float]:
    """Run one example in its work folder; what a terminal would show, and the seconds it took."""
    if example.digits:
        from mnist_edge.data import load_test_split

        write_digits(folder, load_test_split().x_test)
    argv = shlex.split(example.command)
    entry = Path(sys.executable).parent / argv[0]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr in the order they were written
    if sources:
        env["MNIST_EDGE_FIRMWARE_SOURCES"] = str(sources)
    started = time.perf_counter()
    done = subprocess.run(
        [str(entry), *argv[1:]],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != example.exit_code:
        raise ExampleFailed(
            f"`{example.command}` exited {done.returncode}, expected {example.exit_code}:\n"
            + "\n".join(done.stdout.splitlines()[-30:])
        )
    return terminal_text(done.stdout), seconds


def terminal_text(output: str) -> str:
    """The output as a page shows it: lines without trailing blanks, no blank lines at the end."""
    return "\n".join(line.rstrip() for line in output.rstrip().splitlines())


def block(example: Example, output: str) -> str:
    """The console block's body for an example."""
    return f"$ {example.command}\n{output}\n"


def rewrite(pages, bodies: dict[tuple[str, str], str]) -> list[Path]:
    """Replace the bodies of the given blocks ((kind, name) -> body); the pages that changed."""
    changed = []
    for page in pages:
        text = page.read_text()

        def fill(match: re.Match) -> str:
            body = bodies.get((match["kind"], match["name"]))
            return match[0] if body is None else match["head"] + body + match["tail"]

        new = MARKER.sub(fill, text)
        if new != text:
            page.write_text(new)
            changed.append(page)
    return changed


def run_examples(wanted: list[str], sources: Path | None, keep: Path | None) -> dict[str, str]:
    """Run the wanted examples (and those they start from): name -> its block's body. An
    example that fails is reported and its block kept, and so are those that start from it."""
    root = Path(tempfile.mkdtemp(prefix="mnist-edge-docs-"))
    bodies: dict[str, str] = {}
    failed: set[str] = set()
    wide: list[str] = []
    try:
        for name in chain(wanted):
            example = EXAMPLES[name]
            if example.start in failed:
                failed.add(name)
                print(f"{name:16} skipped: {example.start} failed", file=sys.stderr)
                continue
            folder = root / name
            if example.start:
                shutil.copytree(root / example.start, folder, symlinks=True)
            else:
                (folder / "artifacts").mkdir(parents=True)
            try:
                output, seconds = run_example(example, folder, sources)
            except ExampleFailed as failure:
                failed.add(name)
                print(f"{name:16} FAILED: {failure}", file=sys.stderr)
                continue
            print(f"{name:16} {seconds:6.1f} s  {example.command}", file=sys.stderr)
            if name in wanted:
                bodies[name] = block(example, output)
                widest = max(len(line) for line in bodies[name].splitlines())
                if widest > WIDTH:
                    wide.append(f"{name} ({widest})")
    finally:
        if keep:
            shutil.copytree(root, keep, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(root, ignore_errors=True)
    if wide:
        print(f"wider than {WIDTH} columns: {', '.join(wide)}", file=sys.stderr)
    if failed:
        print(f"not rewritten: {', '.join(sorted(failed))}", file=sys.stderr)
    return bodies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="an example, or `layout` (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the examples and exit")
    parser.add_argument("--sources", type=Path, default=default_sources())
    parser.add_argument("--keep", type=Path, help="copy the work folders here")
    args = parser.parse_args(argv)

    pages = documented()
    unknown = sorted(set(pages) - set(EXAMPLES))
    if unknown:
        raise SystemExit(f"the pages name examples tools/docs.py does not know: {unknown}")
    if args.list:
        for name, example in EXAMPLES.items():
            where = ", ".join(str(p.relative_to(REPO)) for p, _ in pages.get(name, [])) or "-"
            print(f"{name:16} {example.command}  [{where}]")
        return 0
    only = args.only or [*GENERATED, *(name for name in EXAMPLES if name in pages)]
    bodies = {("generated", name): GENERATED[name]() for name in only if name in GENERATED}
    wanted = [name for name in only if name not in GENERATED]
    outputs = run_examples(wanted, args.sources, args.keep) if wanted else {}
    bodies.update({("example", name): body for name, body in outputs.items()})
    for page in rewrite(PAGES, bodies):
        print(f"wrote {page.relative_to(REPO)}", file=sys.stderr)
    return 0 if len(outputs) == len(wanted) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The HTML report: every record gathered, every chart embedded and really loadable in a browser."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mnist_edge.bench import bench
from mnist_edge.errors import MnistEdgeError
from mnist_edge.report import build_report
from mnist_edge.verify import verify

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a copy of the page only: counts images that failed to decode once loaded.
IMAGE_CHECK = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.body.setAttribute('data-check', `images=${images.length};broken=${broken}`);
});</script>"""


@pytest.fixture(scope="module")
def full_folder(tmp_path_factory, trained, exported, mnist):
    folder = tmp_path_factory.mktemp("report")
    shutil.copytree(exported[0], folder, dirs_exist_ok=True)
    shutil.copy(trained[0] / "train.json", folder / "train.json")
    verify(folder, mnist, limit=2000)
    bench(folder, mnist, runs=20, warmup=2, batch_sizes=[1, 8], roofline=False)
    return folder


@pytest.mark.slow
def test_report_gathers_every_record(full_folder):
    page = build_report(full_folder)
    assert page.sections == ["Training", "Exports", "Verification against Keras", "Benchmark"]
    # Curves, confusion, the disagreeing digits as pictures, per-class, bench.
    assert page.images == 5 and page.missing == ["bundle/manifest.json"]
    html = (full_folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert 'alt="disagreements"' in html
    assert "model_int8.tflite" in html and "Keras accuracy" in html
    assert "on which model_int8.tflite (litert) and Keras disagree" in html
    assert "http://" not in html and "https://" not in html  # self-contained


@pytest.mark.slow
@pytest.mark.needs_tools(("chromium", "chromium-browser"))  # .ci/run installs Debian's package
def test_every_image_loads_in_headless_chromium(full_folder, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    build_report(full_folder)
    page = tmp_path / "checked.html"
    html = (full_folder / "report.html").read_text()
    page.write_text(html.replace("</body>", IMAGE_CHECK + "</body>"))
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'data-check="images=(\d+);broken=(\d+)"', done.stdout)
    assert match, done.stderr[-2000:]
    assert match.groups() == ("5", "0")


def test_report_with_some_records_says_what_is_missing(tmp_path):
    (tmp_path / "export.json").write_text(
        '{"files": [{"name": "model.onnx", "format": "onnx-float32", "bytes": 10,'
        ' "sha256": "ab"}], "calibration": null}'
    )
    page = build_report(tmp_path)
    assert page.sections == ["Exports"] and page.images == 0
    assert page.missing == ["train.json", "verify.json", "bench.json", "bundle/manifest.json"]


def test_report_needs_records(tmp_path):
    with pytest.raises(MnistEdgeError, match="no train/export/verify/bench records"):
        build_report(tmp_path)
    (tmp_path / "verify.json").write_text("{not json")
    with pytest.raises(MnistEdgeError, match="verify.json: not a readable JSON record"):
        build_report(tmp_path)


def test_record_from_another_version_is_named(tmp_path):
    (tmp_path / "verify.json").write_text('{"reference": {"accuracy": 0.99}, "results": []}')
    with pytest.raises(MnistEdgeError, match=r"verify.json: lacks .*'images'.*mnist-edge verify"):
        build_report(tmp_path)

"""predict: any export on real files and arrays; bad files named, the rest classified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_edge.cli import app
from mnist_edge.data import to_float
from mnist_edge.errors import MnistEdgeError
from mnist_edge.predict import collect_inputs, predict
from mnist_edge.runtimes import open_runner
from tests.helpers import assert_exit
from tests.test_preprocess import on_paper, save

PNG_DIGITS = 20  # the first test images, written as PNG files as-is and inverted
runner = CliRunner()


def test_folders_give_their_images_sorted_and_nothing_else(tmp_path, digit):
    for name in ("b.png", "a.JPG", "c.jpeg"):
        save(tmp_path / name, digit)
    (tmp_path / "notes.txt").write_text("not an input")
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "deeper.png", digit)
    names = [p.name for p in collect_inputs([tmp_path])]
    assert names == ["a.JPG", "b.png", "c.jpeg"]  # not recursive, not the text file
    (tmp_path / "empty").mkdir()
    with pytest.raises(MnistEdgeError, match=r"empty: no \.png, \.jpg, \.jpeg files in this"):
        collect_inputs([tmp_path / "sub" / "deeper.png", tmp_path / "empty"])
    with pytest.raises(MnistEdgeError, match=r"absent\.png: no such file or folder"):
        collect_inputs([tmp_path / "absent.png"])


# --- with a model: the classes the model gives the original arrays ---


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory, mnist) -> Path:
    """The first test digits as 8-bit PNGs, as-is and inverted (black ink on white)."""
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(mnist.x_test[:PNG_DIGITS]):
        save(folder / f"{i:02d}.png", image)
        save(folder / f"{i:02d}_inverted.png", 255 - image)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("model", ["model_int8.tflite", "model.onnx", "model.keras"])
def test_pngs_as_is_and_inverted_get_the_models_classes(exported, mnist, png_folder, model):
    artifacts, _ = exported
    expected = open_runner(artifacts / model).predict(to_float(mnist.x_test[:PNG_DIGITS]))
    result = predict([png_folder], model=artifacts / model)
    assert result and len(result.predictions) == 2 * PNG_DIGITS
    digits = {Path(p.file).name: p.digit for p in result.predictions}
    for i, probabilities in enumerate(expected):
        assert digits[f"{i:02d}.png"] == digits[f"{i:02d}_inverted.png"] == probabilities.argmax()
    first = result.predictions[0]
    assert [c.digit for c in first.top][0] == first.digit and len(first.top) == 3
    assert first.top[0].probability >= first.top[1].probability >= first.top[2].probability


@pytest.mark.slow
def test_photo_like_jpegs_and_colored_rgba_get_the_models_classes(tmp_path, exported, mnist):
    artifacts, _ = exported
    model = artifacts / "model_int8.tflite"
    digits = mnist.x_test[:10]
    expected = open_runner(model).predict(to_float(digits)).argmax(axis=1)
    files = []
    for i, digit in enumerate(digits):
        files.append(save(tmp_path / f"photo{i}.jpg", on_paper(digit, seed=i), quality=85))
        rgba = np.zeros((*digit.shape, 4), np.uint8)
        rgba[..., :3] = (20, 40, 160)  # blue ink, opaque where drawn, on a transparent canvas
        rgba[..., 3] = digit
        files.append(save(tmp_path / f"blue{i}.png", rgba))
    result = predict(files, model=model)
    assert result
    got = [p.digit for p in result.predictions]
    assert got[0::2] == expected.tolist()  # the photos
    assert got[1::2] == expected.tolist()  # the blue ink


@pytest.mark.slow
def test_npy_input_is_fed_as_is(tmp_path, exported, mnist):
    artifacts, _ = exported
    model = artifacts / "model.onnx"
    np.save(tmp_path / "digits.npy", mnist.x_test[:300])
    result = predict(tmp_path / "digits.npy", model=model)
    probabilities = open_runner(model).predict(to_float(mnist.x_test[:300]))
    assert [p.digit for p in result.predictions] == probabilities.argmax(axis=1).tolist()
    assert result.predictions[4].file == f"{tmp_path / 'digits.npy'}[4]"
    assert result.predictions[0].probability == pytest.approx(
        float(probabilities[0].max()), abs=1e-6
    )


@pytest.mark.slow
def test_cli_reports_bad_files_by_name_classifies_the_rest_and_exits_1(tmp_path, exported, mnist):
    artifacts, _ = exported
    folder = tmp_path / "inbox"
    folder.mkdir()
    for i in range(3):
        save(folder / f"good{i}.png", mnist.x_test[i])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("a text file with an image's name")
    readme = tmp_path / "README.txt"
    readme.write_text("given explicitly, so it is an input")
    model = artifacts / "model_int8.tflite"

    result = runner.invoke(app, ["predict", str(folder), str(readme), "--model", str(model)])
    assert_exit(result, 1)
    for name in ("good0.png", "good1.png", "good2.png", "empty.png", "notes.png", "README.txt"):
        assert name in result.stdout
    assert "3 classified, 3 skipped" in result.stdout.replace("\n", " ")
    assert "skipped 3 of 6" in result.stderr
    assert "empty.png: empty file (0 bytes)" in result.stderr
    assert "notes.png: not a PNG or JPEG image" in result.stderr

    result = runner.invoke(app, ["predict", str(folder), "--model", str(model), "--json"])
    assert_exit(result, 1)
    payload = json.loads(result.stdout)  # the JSON is complete even when some are skipped
    rows = {Path(p["file"]).name: p for p in payload["predictions"]}
    assert rows["good0.png"]["digit"] == 7 and rows["good0.png"]["error"] is None
    assert rows["empty.png"]["digit"] is None and "empty file" in rows["empty.png"]["error"]
    assert payload["runtime"] == "litert"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{artifacts}/absent.tflite"], "no such model file"),
        (["--model", "{artifacts}/model.onnx", "--runtime", "all"], "predict runs one runtime"),
        (["--model", "{artifacts}/model.onnx", "--runtime", "litert"], "cannot run a .onnx file"),
    ],
)
def test_cli_user_errors_exit_2(exported, png_folder, args, message):
    artifacts, _ = exported
    argv = ["predict", str(png_folder), *(a.format(artifacts=artifacts) for a in args)]
    result = runner.invoke(app, argv)
    assert_exit(result, 2)
    assert result.stderr.startswith("error: ") and message in result.stderr

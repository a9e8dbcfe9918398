"""preprocess: MNIST's preprocessing on real files and arrays; bad inputs refused by name."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from typer.testing import CliRunner

from mnist_edge.data import to_float
from mnist_edge.errors import MnistEdgeError
from mnist_edge.preprocess import (
    CANVAS,
    FIT_SIDE,
    MAX_PIXELS,
    load_array,
    load_image,
    preprocess_digit,
)

PNG_DIGITS = 20  # the first test images, written as PNG files as-is and inverted
runner = CliRunner()


def save(path: Path, image: np.ndarray | Image.Image, **options) -> Path:
    """Write an array or a Pillow image as an image file (format from the suffix)."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    image.save(path, **options)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width×height, then IEND: no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """Height and width of the nonzero pixels' bounding box."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = image.sum()
    return (
        float(image.sum(axis=1) @ np.arange(image.shape[0]) / total),
        float(image.sum(axis=0) @ np.arange(image.shape[1]) / total),
    )


def on_paper(digit: np.ndarray, seed: int, side: int = 240) -> np.ndarray:
    """A photo-like RGB: the digit upscaled, in dark ink on off-white paper lit from one side."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)) / 255
    height, width = side + 120, side + 80
    paper = np.linspace(0.72, 0.92, width)[np.newaxis, :] * np.ones((height, 1))
    paper = paper + rng.normal(0, 0.02, paper.shape)
    top, left = rng.integers(10, 110), rng.integers(10, 70)
    window = paper[top : top + side, left : left + side]
    paper[top : top + side, left : left + side] = window * (1 - ink) + 0.15 * ink
    gray = np.clip(paper, 0, 1)
    rgb = np.stack([gray, gray * 0.96, gray * 0.88], axis=-1)  # warm paper, not neutral gray
    return (rgb * 255).astype(np.uint8)


# --- preprocessing properties (no model) ---


def test_mnist_digits_are_already_in_mnist_format(mnist):
    """MNIST's own digits (fit to 20×20, centered by mass) come back almost all unchanged."""
    images = to_float(mnist.x_test[:1000])[..., 0]
    out = np.stack([preprocess_digit(image) for image in images])
    assert out.shape == (1000, CANVAS, CANVAS) and out.dtype == np.float32
    unchanged = np.mean(np.all(out == images, axis=(1, 2)))
    # Measured 0.898 on all 10,000; nearly all the rest had a brightest pixel below 255, and the
    # preprocessing stretches ink to full scale.
    assert unchanged > 0.85
    for image in out:
        assert max(ink_box(image)) == FIT_SIDE
        assert np.allclose(center_of_mass(image), 14.0, atol=0.5)


@pytest.mark.parametrize("index", range(10))
def test_inverting_padding_and_upscaling_change_nothing(mnist, index):
    digit = to_float(mnist.x_test[index : index + 1])[0, ..., 0]
    expected = preprocess_digit(digit)
    assert np.allclose(preprocess_digit(1.0 - digit), expected, atol=1e-6)
    padded = np.pad(digit, ((30, 5), (2, 40)))  # off-center on a larger canvas
    assert np.allclose(preprocess_digit(padded), expected, atol=1e-6)
    assert np.allclose(preprocess_digit(1.0 - padded), expected, atol=1e-6)
    big = np.kron(digit, np.ones((5, 5), np.float32))  # 140×140, blocky
    assert np.abs(preprocess_digit(big) - expected).mean() < 0.05


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 70), st.integers(1, 70)),
        elements=st.floats(0, 1, width=32),
    )
)
def test_any_grayscale_array_gives_an_mnist_image_or_no_digit(gray):
    try:
        out = preprocess_digit(gray)
    except MnistEdgeError as exc:
        assert str(exc).startswith("no digit found")
        return
    assert out.shape == (CANVAS, CANVAS) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0
    height, width = ink_box(out)
    assert height <= FIT_SIDE and width <= FIT_SIDE


def test_a_blank_image_has_no_digit():
    with pytest.raises(MnistEdgeError, match=r"no digit found: the image is blank"):
        preprocess_digit(np.full((50, 40), 0.8, np.float32))


# --- files: every format we promise, every bad file we refuse ---


def test_16_bit_rgba_palette_and_inverted_pngs_match_the_8_bit_png(tmp_path, digit):
    expected = load_image(save(tmp_path / "gray8.png", digit))
    sixteen = save(tmp_path / "gray16.png", digit.astype(np.uint16) * 257)
    assert Image.open(sixteen).mode.startswith("I;16")
    rgba = np.zeros((*digit.shape, 4), np.uint8)
    rgba[..., 3] = digit  # black ink drawn on a transparent canvas
    variants = {
        "gray16.png": sixteen,
        "rgba.png": save(tmp_path / "rgba.png", rgba),
        "palette.png": save(tmp_path / "palette.png", Image.fromarray(digit).convert("P")),
        "inverted.png": save(tmp_path / "inverted.png", 255 - digit),
    }
    for name, path in variants.items():
        assert np.allclose(load_image(path), expected, atol=1e-6), name


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty file \(0 bytes\)"),
        (b"hello, not an image\n", r"not a PNG or JPEG image"),
        (b"GIF89a" + bytes(50), r"not a PNG or JPEG image"),  # Pillow reads GIF; we do not
        ("truncated", r"corrupt or truncated image"),
        (png_header_only(8000, 6000), r"image too large: 8000×6000 = 48,000,000 pixels"),
        (png_header_only(20000, 20000), r"image too large: 400,000,000 pixels"),  # Pillow's guard
        ("blank", r"no digit found"),
    ],
)
def test_bad_image_files_are_refused_by_name(tmp_path, digit, content, message):
    path = tmp_path / "input.png"
    if content == "truncated":
        content = save(tmp_path / "whole.png", digit).read_bytes()[:120]
    elif content == "blank":
        content = save(tmp_path / "whole.png", np.full((30, 30), 200, np.uint8)).read_bytes()
    path.write_bytes(content)
    with pytest.raises(MnistEdgeError, match=rf"^{re.escape(str(path))}: {message}"):
        load_image(path)


def test_pixel_cap_is_below_pillows_own_guard():
    assert MAX_PIXELS < Image.MAX_IMAGE_PIXELS


def _mutations(seed: bytes, span: int | None = None) -> st.SearchStrategy[bytes]:
    """A real file with up to 8 bytes overwritten (within its first `span`), then cut anywhere."""
    positions = st.integers(0, min(len(seed), span or len(seed)) - 1)
    edits = st.lists(st.tuples(positions, st.integers(0, 255)), max_size=8)
    return st.builds(_mutate, st.just(seed), edits, st.integers(0, len(seed)))


def _mutate(seed: bytes, edits: list[tuple[int, int]], end: int) -> bytes:
    data = bytearray(seed)
    for position, value in edits:
        data[position] = value
    return bytes(data[:end])


def _encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def _with_exif(array: np.ndarray, fmt: str) -> bytes:
    """An encoded image whose EXIF says: rotate by 90° (as a phone photo's does)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation
    exif[0x010F] = "mnist-edge"  # make
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


SEED_DIGIT = np.zeros((28, 28), np.uint8)
SEED_DIGIT[6:22, 12:16] = 255  # a plain "1"
ANY_BYTES = st.one_of(
    st.binary(max_size=512),
    _mutations(_encoded(SEED_DIGIT, "PNG")),
    _mutations(_encoded(SEED_DIGIT, "JPEG")),
    _mutations(_encoded(SEED_DIGIT.astype(np.uint16) * 257, "PNG")),
    # The EXIF block sits in a JPEG's first 200 bytes; damaged, it crashed exif_transpose.
    _mutations(_with_exif(SEED_DIGIT, "JPEG"), span=200),
    _mutations(_with_exif(SEED_DIGIT, "PNG")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_BYTES)
def test_any_bytes_give_an_image_or_the_documented_error(content):
    """Whatever the bytes: a 28×28 image, or a MnistEdgeError naming the file; never a crash."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "input.png"
        path.write_bytes(content)
        try:
            image = load_image(path)
        except MnistEdgeError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            assert reason.startswith(
                (
                    "empty file",
                    "not a PNG or JPEG image",
                    "corrupt or truncated image",
                    "image too large",
                    "no digit found",
                )
            ), reason
            return
        assert image.shape == (CANVAS, CANVAS) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def tiff_ifd(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header and one IFD: (tag, type, count, value bytes) per entry."""
    header = b"II*\x00" + struct.pack("<I", 8)
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, data_offset + len(extra))
            extra += value
    return header + ifd + struct.pack("<I", 0) + extra


def test_exif_orientation_turns_a_phone_photo_upright(tmp_path, digit):
    expected = load_image(save(tmp_path / "upright.png", digit))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": how a phone held upright stores it
    sideways = Image.fromarray(digit).transpose(Image.Transpose.ROTATE_90)
    path = save(tmp_path / "sideways.png", sideways, exif=exif.tobytes())
    assert np.array_equal(load_image(path), expected)


def test_a_damaged_exif_block_keeps_the_pixels(tmp_path, digit):
    """Found by fuzzing: SubIFDs holding text made Pillow's exif_transpose raise struct.error."""
    tiff = tiff_ifd([(0x0112, 3, 1, struct.pack("<H", 6)), (0x014A, 2, 6, b"Maker\x00")])
    path = save(tmp_path / "photo.jpg", digit, exif=b"Exif\x00\x00" + tiff, quality=95)
    assert load_image(path).shape == (CANVAS, CANVAS)


# --- .npy arrays: fed as is ---


@pytest.mark.parametrize(
    "prepare",
    [
        lambda x: x,  # uint8 N×28×28, MNIST's own arrays
        lambda x: x[..., np.newaxis].astype(np.float32) / 255,  # the model's float input
        lambda x: x.astype(np.int64),  # what np.array(list_of_ints) gives
    ],
)
def test_npy_arrays_load_as_the_model_input(tmp_path, mnist, prepare):
    x = mnist.x_test[:7]
    np.save(tmp_path / "digits.npy", prepare(x))
    assert np.allclose(load_array(tmp_path / "digits.npy"), to_float(x)[..., 0], atol=1e-7)


def test_a_single_28x28_array_is_one_image(tmp_path, digit):
    np.save(tmp_path / "one.npy", digit)
    assert load_array(tmp_path / "one.npy").shape == (1, CANVAS, CANVAS)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 28, 28), 255.0, np.float32), r"float values 255\.\.255; float images must"),
        (np.zeros((3, 32, 32), np.uint8), r"array shape \(3, 32, 32\); expected N×28×28"),
        (np.zeros((0, 28, 28), np.uint8), r"array holds no images"),
        (np.full((1, 28, 28), -1, np.int16), r"int16 values -1\.\.-1; integer images must"),
        (np.full((1, 28, 28), np.nan, np.float32), r"array has NaN or infinite values"),
        (np.array([{"a": 1}], dtype=object), r"holds Python objects \(a pickle\); refused"),
        (np.zeros((1, 28, 28), np.complex64), r"dtype complex64; expected uint8"),
    ],
)
def test_bad_arrays_are_refused_by_name(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(MnistEdgeError, match=rf"^{re.escape(str(path))}: {message}"):
        load_array(path)


def test_an_npz_named_npy_is_refused(tmp_path):
    path = tmp_path / "archive.npy"
    with open(path, "wb") as handle:
        np.savez(handle, x=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(MnistEdgeError, match=r"\.npz archive, not a \.npy array"):
        load_array(path)


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float64,
        st.integers(1, 60),
        elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    )
)
def test_median_is_numpys_to_the_bit(values):
    from mnist_edge.preprocess import median

    assert median(values) == np.median(values)
    as_float32 = values.astype(np.float32)
    assert median(as_float32) == np.median(as_float32)

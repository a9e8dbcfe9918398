"""MNIST's own preprocessing for a user's images, and reading them: PNG/JPEG files and .npy
arrays. numpy and Pillow only.

Images get MNIST's own preprocessing (LeCun et al.): grayscale; the light background made dark;
cropped to the digit's bounding box; scaled to fit 20×20 keeping the aspect ratio; pasted into
28×28 so that the center of mass lands on pixel (14, 14), where MNIST's digits have it. One digit
per image, on a plain background (a scan, a photo of paper, a drawing app's export).

A .npy array is taken as already in MNIST's format and fed as is: N×28×28 or N×28×28×1 (or one
28×28 image), uint8 0-255 (MNIST's own arrays), another integer type holding 0-255, or float 0-1.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_edge.errors import MnistEdgeError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIX = ".npy"
# Only these decoders ever see a user's bytes: fewer file formats, fewer parsers to trust.
IMAGE_FORMATS = ("PNG", "JPEG")
# Our own cap, below Pillow's decompression-bomb guard (89.5 MP warns, 179 MP refuses): a 40 MP
# image is about 160 MB as float32, which a small board can still hold.
MAX_PIXELS = 40_000_000
# Finding a digit and scaling it to 20 px needs no more than this; larger images are first
# box-averaged down by an integer factor (which also averages a photo's sensor noise away).
WORK_SIDE = 1024
CANVAS = 28
FIT_SIDE = 20
CENTER = 14.0  # MNIST's mean center of mass, in pixel indices, measured on its test set
BORDER_FRACTION = 50  # the paper is read on a ring 1/50 of the short side wide (≥ 1 px)
MAD_TO_SIGMA = 1.4826  # median absolute deviation to a Gaussian's standard deviation
# Ink is what stands 6σ above the paper: at 4σ, a 1 MP photo's grain alone spans the whole frame.
NOISE_SIGMAS = 6.0
CLEANUP = 0.5  # after scaling, gray below half that level is grain, set to MNIST's black
MIN_CONTRAST = 0.1  # ink less than this above the paper: a blank image, no digit


def _ring(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the image's outer ring (the whole image when it is tiny)."""
    ring = max(1, min(height, width) // BORDER_FRACTION)
    mask = np.ones((height, width), dtype=bool)
    if height > 2 * ring and width > 2 * ring:
        mask[ring:-ring, ring:-ring] = False
    return np.nonzero(mask)


def median(values: np.ndarray) -> np.floating:
    """np.median's value for a 1-D array, without its first call importing numpy.ma (~13 ms,
    a twentieth of a `predict` process): partition, then the middle one or the mean of two."""
    n = values.size
    if n == 0:
        raise ValueError("median of an empty array")
    middle = n // 2
    if n % 2:
        return np.partition(values, middle)[middle]
    part = np.partition(values, (middle - 1, middle))
    return np.mean(part[middle - 1 : middle + 1])


def _background(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper as a plane fitted to the outer ring, and the noise around it (σ)."""
    height, width = gray.shape
    rows, cols = _ring(height, width)
    values = gray[rows, cols].astype(np.float64)
    # A plane, not a constant: a photo lit from one side is brighter on that side.
    design = np.stack(
        [np.ones_like(values), cols / max(width - 1, 1), rows / max(height - 1, 1)], axis=1
    )
    # Robust: the ring's ink (a digit touching the edge) is left out of the fit and of σ.
    residual = values - median(values)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(3):
        sigma = MAD_TO_SIGMA * float(median(np.abs(residual[keep])))
        keep = np.abs(residual) <= 3 * sigma + 1e-6
        coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coef
    sigma = MAD_TO_SIGMA * float(median(np.abs(residual[keep])))
    y = np.arange(height, dtype=np.float64)[:, np.newaxis] / max(height - 1, 1)
    x = np.arange(width, dtype=np.float64)[np.newaxis, :] / max(width - 1, 1)
    return (coef[0] + coef[1] * x + coef[2] * y).astype(np.float32), sigma


def _round(x: float) -> int:
    # Half up, not Python's half to even: a placement must not depend on parity.
    return int(np.floor(x + 0.5))


def preprocess_digit(gray: np.ndarray) -> np.ndarray:
    """MNIST-style 28×28 float32 image in [0, 1] from a grayscale H×W image in [0, 1]."""
    gray = np.asarray(gray, dtype=np.float32)
    if gray.ndim != 2 or gray.size == 0:
        raise MnistEdgeError(f"expected a non-empty H×W grayscale image; got shape {gray.shape}")
    if not np.isfinite(gray).all():
        raise MnistEdgeError("image has NaN or infinite values")
    if float(median(gray[_ring(*gray.shape)])) > 0.5:
        gray = 1.0 - gray  # dark ink on light paper: MNIST's digits are light on black
    paper, noise = _background(gray)
    ink = gray - paper
    floor = NOISE_SIGMAS * noise
    peak = float(ink.max())
    if peak - floor < MIN_CONTRAST:
        raise MnistEdgeError(
            f"no digit found: the image is blank (contrast {max(peak - floor, 0.0):.2f}, "
            f"need {MIN_CONTRAST})"
        )
    # The box is where ink stands out of the noise; the pixels keep their gray levels.
    rows = np.flatnonzero((ink > floor).any(axis=1))
    cols = np.flatnonzero((ink > floor).any(axis=0))
    ink = np.clip(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] / peak, 0.0, 1.0)
    height, width = ink.shape
    scale = FIT_SIDE / max(height, width)
    size = (max(1, _round(width * scale)), max(1, _round(height * scale)))
    if size != (width, height):
        # Lanczos anti-aliases when shrinking (as MNIST's normalization did) and can overshoot.
        resized = Image.fromarray(np.ascontiguousarray(ink)).resize(size, Image.Resampling.LANCZOS)
        ink = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
        height, width = ink.shape
    # Shrinking averaged the paper's grain down; what is left of it goes, MNIST's black is 0.
    ink[ink <= CLEANUP * floor / peak] = 0.0
    total = float(ink.sum())
    if total <= 0.0:
        raise MnistEdgeError("no digit found: nothing left after scaling to 20×20")
    center_y = float(ink.sum(axis=1) @ np.arange(height)) / total
    center_x = float(ink.sum(axis=0) @ np.arange(width)) / total
    # Clamped so the whole digit stays on the canvas, even if its mass sits near one end.
    top = min(max(_round(CENTER - center_y), 0), CANVAS - height)
    left = min(max(_round(CENTER - center_x), 0), CANVAS - width)
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    canvas[top : top + height, left : left + width] = ink
    return canvas


def _shrink(image: Image.Image) -> Image.Image:
    factor = -(-max(image.size) // WORK_SIDE)
    return image.reduce(factor) if factor > 1 else image


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Float32 H×W in [0, 1] from any Pillow image: 16-bit kept, alpha composited, big shrunk."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit PNGs open as I;16 (older Pillow: I); Pillow's 8-bit conversion would clip them.
        scale = 1.0 if image.mode == "F" else 65535.0
        gray = np.asarray(image, dtype=np.float32) / np.float32(scale)
        return np.asarray(_shrink(Image.fromarray(np.clip(gray, 0.0, 1.0))), dtype=np.float32)
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        pair = np.asarray(_shrink(image.convert("RGBA").convert("LA")), dtype=np.float32) / 255.0
        gray, alpha = pair[..., 0], pair[..., 1]
        opaque = alpha >= 0.5
        # Transparent pixels become the paper: white under dark ink, black under light ink.
        ink_is_dark = not opaque.any() or float(gray[opaque].mean()) < 0.5
        paper = 1.0 if ink_is_dark else 0.0
        return (alpha * gray + (1.0 - alpha) * paper).astype(np.float32)
    return np.asarray(_shrink(image.convert("L")), dtype=np.float32) / np.float32(255.0)


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            raise MnistEdgeError("no such file")
        if not path.is_file():
            raise MnistEdgeError("not a regular file")
        if path.stat().st_size == 0:
            raise MnistEdgeError("empty file (0 bytes)")
    except OSError as exc:
        raise MnistEdgeError(f"cannot read it ({exc.strerror})") from None


def _too_large(pixels: str) -> MnistEdgeError:
    return MnistEdgeError(
        f"image too large: {pixels} pixels, the cap is {MAX_PIXELS:,} (a decompression-bomb "
        "guard); downscale it first"
    )


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says (a phone photo), if the tag is sound."""
    try:
        return ImageOps.exif_transpose(image)
    # A damaged EXIF block is metadata, not pixels: Pillow raises any of these when it writes one
    # back (seen in fuzzing: text in a numeric tag), and the pixels are still good.
    except (TypeError, ValueError, KeyError, SyntaxError, OSError, struct.error):
        return image


def read_image(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        # Our cap is lower than Pillow's warning threshold, so its warning adds nothing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # "Corrupt EXIF data" and the like, once per file: noise beside a table of results.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise _too_large(f"{width}×{height} = {width * height:,}")
                if image.format == "JPEG":
                    # The JPEG decoder itself scales by 1/2, 1/4 or 1/8: less memory and time.
                    image.draft("L", (WORK_SIDE, WORK_SIDE))
                image.load()
                return to_grayscale(_upright(image))
    except Image.DecompressionBombError as exc:
        # Pillow refuses before reading the size out to us; its message carries the count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(f"{int(found[1]):,}" if found else "over 179 million") from None
    except UnidentifiedImageError:
        raise MnistEdgeError("not a PNG or JPEG image") from None
    # Pillow's decoders report corrupt data with any of these.
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise MnistEdgeError(f"corrupt or truncated image ({first_line(exc)})") from None


def load_image(path: Path) -> np.ndarray:
    """A PNG or JPEG file as one MNIST-style 28×28 float32 image in [0, 1]."""
    path = Path(path)
    try:
        return preprocess_digit(read_image(path))
    except MnistEdgeError as exc:
        raise MnistEdgeError(f"{path}: {exc}") from None


def read_array(path: Path) -> np.ndarray:
    _check_file(path)
    try:
        # Memory-mapped: shape and dtype are checked before the data are read.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        # numpy says so in words only: "Python objects in dtype" (mmap), "allow_pickle" (not).
        if "Python objects" in str(exc) or "pickle" in str(exc):
            raise MnistEdgeError("holds Python objects (a pickle); refused") from None
        raise MnistEdgeError(f"not a readable .npy file ({first_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise MnistEdgeError(f"not a readable .npy file ({first_line(exc)})") from None
    if not isinstance(array, np.ndarray):
        raise MnistEdgeError("is an .npz archive, not a .npy array")
    shape = array.shape
    if shape in ((CANVAS, CANVAS), (CANVAS, CANVAS, 1)):
        array = array.reshape(1, CANVAS, CANVAS)
    elif len(shape) == 4 and shape[1:] == (CANVAS, CANVAS, 1):
        array = array.reshape(shape[0], CANVAS, CANVAS)
    elif not (len(shape) == 3 and shape[1:] == (CANVAS, CANVAS)):
        raise MnistEdgeError(f"array shape {shape}; expected N×28×28 or N×28×28×1")
    if len(array) == 0:
        raise MnistEdgeError("array holds no images (N = 0)")
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        return np.asarray(array, dtype=np.float32) / np.float32(255.0)
    if kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise MnistEdgeError(
                f"{array.dtype} values {low}..{high}; integer images must be 0-255"
            )
        return np.asarray(array, dtype=np.float32) / np.float32(255.0)
    if kind == "f":
        values = np.asarray(array, dtype=np.float32)
        if not np.isfinite(values).all():
            raise MnistEdgeError("array has NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise MnistEdgeError(
                f"float values {low:g}..{high:g}; float images must be 0-1 "
                "(divide 0-255 data by 255, or save it as uint8)"
            )
        return values
    raise MnistEdgeError(f"dtype {array.dtype}; expected uint8 (0-255) or float (0-1)")


def load_array(path: Path) -> np.ndarray:
    """A .npy array as N×28×28 float32 in [0, 1], for the model as is (no preprocessing)."""
    path = Path(path)
    try:
        return read_array(path)
    except MnistEdgeError as exc:
        raise MnistEdgeError(f"{path}: {exc}") from None

"""Decoding scans to 8-bit grayscale: PNG / JPEG of any bit depth, and DICOM.

Radiographs are acquired with 10 to 16 significant bits; exports keep them in 16-bit PNGs (often
only 12 of the 16 bits used) or in DICOM files. Every scan is mapped linearly from its *real* bit
depth to 8 bits, ``round(v * 255 / (2**bits - 1))``, where ``bits`` is

* DICOM: ``BitsStored`` (MONOCHROME1, which stores dense tissue dark, is inverted first; signed
  pixels are shifted to start at 0);
* 16-bit (or 32-bit integer) PNG / TIFF: the bit length of the observed maximum, at least 8 (a
  12-bit scan with maximum 3744 is scaled by 255/4095; an 8-bit-range image is kept as it is);
* 8-bit images: unchanged; colour images are converted with the ITU-R 601 luma weights (equal
  channels, as in grayscale radiographs stored as RGB, are unchanged).

A scan whose dynamic range collapses in that mapping (fewer than :data:`MIN_GRAY_LEVELS` gray levels
between its darkest and brightest pixel, e.g. 12-bit data in a DICOM that claims ``BitsStored`` 16)
is an error naming the file: it would train on an almost uniform image. So is a file that cannot be
decoded completely (truncated, corrupt, missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

#: A windowed scan must span at least this many 8-bit gray levels (max - min).
MIN_GRAY_LEVELS = 16

#: PIL modes of images with more than 8 bits per pixel.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class CorruptImageError(RuntimeError):
    """An image could not be decoded (or its dynamic range collapses); the message names the file."""


def read_grayscale(path: str | os.PathLike) -> Image.Image:
    """Decode an image completely and return it as 8-bit grayscale (``L``), windowed from its real
    bit depth (module docstring). Raises :class:`CorruptImageError` naming ``path`` when the file
    cannot be decoded completely or its dynamic range collapses."""
    try:
        if is_dicom(path):
            pixels, bits = _dicom_pixels(path)
            return Image.fromarray(window(pixels, bits, path), mode="L")
        with Image.open(path) as img:
            img.load()  # force a full decode: truncated files fail here
            if img.mode in _WIDE_MODES:
                pixels = np.asarray(img, dtype=np.int64)
                bits = max(8, int(pixels.max(initial=0)).bit_length())
                return Image.fromarray(window(pixels, bits, path), mode="L")
            return img.convert("L") if img.mode != "L" else img.copy()
    except FileNotFoundError as exc:
        raise CorruptImageError(f"{path}: image file not found") from exc
    except CorruptImageError:
        raise
    except (OSError, SyntaxError, ValueError, AttributeError, KeyError) as exc:  # PIL/pydicom signal bad data so
        raise CorruptImageError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def window(pixels: np.ndarray, bits: int, path: str | os.PathLike = "<array>") -> np.ndarray:
    """``pixels`` (non-negative integers of ``bits`` significant bits) mapped linearly to ``uint8``;
    :class:`CorruptImageError` naming ``path`` when fewer than :data:`MIN_GRAY_LEVELS` levels remain."""
    if pixels.size == 0:
        raise CorruptImageError(f"{path}: image has no pixels")
    top = float(2**bits - 1)
    low, high = int(pixels.min()), int(pixels.max())
    if high > top or low < 0:
        raise CorruptImageError(f"{path}: pixel values {low}..{high} do not fit {bits} bits")
    out = np.rint(pixels.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if bits > 8 and int(out.max()) - int(out.min()) < MIN_GRAY_LEVELS:
        raise CorruptImageError(
            f"{path}: dynamic range collapsed: values {low}..{high} of {bits}-bit data become only "
            f"{int(out.min())}..{int(out.max())} in 8 bits (fewer than {MIN_GRAY_LEVELS} gray levels); the file's "
            "bit depth (DICOM BitsStored) overstates its data, or the scan is blank"
        )
    return out


def is_dicom(path: str | os.PathLike) -> bool:
    """A DICOM file: ``.dcm`` suffix, or the ``DICM`` magic at byte 128."""
    if str(path).lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_pixels(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Pixels of a single-frame grayscale DICOM as non-negative integers, and ``BitsStored``."""
    import pydicom

    ds = pydicom.dcmread(Path(path))
    pixels = np.asarray(ds.pixel_array)
    if int(getattr(ds, "SamplesPerPixel", 1)) != 1 or pixels.ndim != 2:
        raise CorruptImageError(f"{path}: expected a single-frame grayscale DICOM, got pixel array {pixels.shape}")
    bits = int(ds.BitsStored)
    pixels = pixels.astype(np.int64)
    if int(getattr(ds, "PixelRepresentation", 0)) == 1:  # two's complement: shift to 0 .. 2**bits - 1
        pixels = pixels + 2 ** (bits - 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = (2**bits - 1) - pixels
    return pixels, bits

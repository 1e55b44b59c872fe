"""Scans of every bit depth become 8-bit grayscale from their real bit depth (issue 17, case 2: 12-bit
data in a 16-bit PNG became values 2-14). Pixel values come from a real radiograph: the 15-bit chest CR
that pydicom-data ships (RG1_UNCR.dcm, MONOCHROME1), rescaled to each depth."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from ddval.data.images import MIN_GRAY_LEVELS, CorruptImageError, read_grayscale
from ddval.data.anatomy import base_radiograph_path


@pytest.fixture(scope="module")
def chest() -> np.ndarray:
    """The real CR as a display-oriented image (bone bright) in [0, 1], 400 x 376 pixels."""
    ds = pydicom.dcmread(base_radiograph_path())
    raw = ds.pixel_array.astype(np.float64)[::5, ::5]
    return (2**15 - 1 - raw) / (2**15 - 1)  # MONOCHROME1 -> bright bone, scaled by the stored 15 bits


def as_bits(chest: np.ndarray, bits: int, stretch: float = 1.0) -> np.ndarray:
    """The radiograph stored with ``bits`` significant bits (``stretch`` < 1 leaves the top unused)."""
    return np.rint(chest * stretch * (2**bits - 1)).astype(np.uint16)


def save_png16(path, pixels: np.ndarray):
    Image.fromarray(pixels.astype(np.uint16)).save(path)  # PIL writes mode I;16 as a 16-bit grayscale PNG
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    return path


def expected_8bit(pixels: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(pixels * 255.0 / (2**bits - 1)).astype(np.uint8)


def test_8bit_png_is_unchanged(tmp_path, chest):
    pixels = as_bits(chest, 8).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(read_grayscale(tmp_path / "a.png")), pixels)


def test_12bit_data_in_a_16bit_png_keeps_its_contrast(tmp_path, chest):
    pixels = as_bits(chest, 12, stretch=0.93)  # maximum below 4095, as exported from DICOM
    assert 2**11 <= pixels.max() < 2**12
    out = np.asarray(read_grayscale(save_png16(tmp_path / "a.png", pixels)))
    np.testing.assert_array_equal(out, expected_8bit(pixels, 12))
    # the contrast of the 8-bit rendering of the same scan, not values 2-14 as the top 8 bits gave
    reference = as_bits(chest, 8, stretch=0.93).astype(np.int64)
    assert np.abs(out.astype(np.int64) - reference).max() <= 1
    assert out.max() - out.min() > 150  # the real scan spans 49-248 in 8 bits


def test_full_range_16bit_png(tmp_path, chest):
    pixels = as_bits(chest, 16)
    out = np.asarray(read_grayscale(save_png16(tmp_path / "a.png", pixels)))
    np.testing.assert_array_equal(out, expected_8bit(pixels, 16))
    assert np.abs(out.astype(int) - (pixels >> 8).astype(int)).max() <= 1  # the top 8 bits, rounded


def test_8bit_range_data_in_a_16bit_png_is_unchanged(tmp_path, chest):
    pixels = as_bits(chest, 8)
    out = np.asarray(read_grayscale(save_png16(tmp_path / "a.png", pixels)))
    np.testing.assert_array_equal(out, pixels.astype(np.uint8))


def test_15bit_monochrome1_dicom_from_bits_stored():
    """The real file: BitsStored 15, MONOCHROME1 (dense tissue stored dark) -> inverted, scaled by 255/32767."""
    path = base_radiograph_path()
    ds = pydicom.dcmread(path)
    assert (ds.BitsStored, ds.PhotometricInterpretation) == (15, "MONOCHROME1")
    out = np.asarray(read_grayscale(path))
    raw = ds.pixel_array.astype(np.int64)
    np.testing.assert_array_equal(out, expected_8bit(2**15 - 1 - raw, 15))
    assert out.max() - out.min() > 150  # the real scan spans 49-248 in 8 bits
    # bone (the spine, centre column) is brighter than lung (left third, mid height)
    h, w = out.shape
    assert out[h // 3 : 2 * h // 3, w // 2 - 20 : w // 2 + 20].mean() > out[h // 3 : 2 * h // 3, w // 6 : w // 3].mean()


def dicom_with(tmp_path, pixels: np.ndarray, bits_stored: int, photometric: str = "MONOCHROME2"):
    """The real file's header with other pixel data and bit depth."""
    ds = pydicom.dcmread(base_radiograph_path())
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PhotometricInterpretation = photometric
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path = tmp_path / "scan.dcm"
    ds.save_as(path)
    return path


def test_12bit_monochrome2_dicom(tmp_path, chest):
    pixels = as_bits(chest, 12, stretch=0.9)
    out = np.asarray(read_grayscale(dicom_with(tmp_path, pixels, 12)))
    np.testing.assert_array_equal(out, expected_8bit(pixels, 12))


def test_a_dicom_without_the_suffix_is_recognised(tmp_path, chest):
    path = dicom_with(tmp_path, as_bits(chest, 12), 12)
    bare = path.rename(tmp_path / "scan_without_suffix")
    assert np.asarray(read_grayscale(bare)).max() > 200


def test_collapsed_dynamic_range_is_an_error_naming_the_file(tmp_path, chest):
    # 12-bit data in a DICOM that claims 16 stored bits: only 0-14 of 255 levels would remain
    path = dicom_with(tmp_path, as_bits(chest, 12, stretch=0.93), 16)
    collapsed = rf"{path}: dynamic range collapsed: .* 16-bit data become only \d+\.\.14 "
    with pytest.raises(CorruptImageError, match=collapsed):
        read_grayscale(path)
    # a blank 16-bit PNG (detector read-out of nothing)
    flat = save_png16(tmp_path / "blank.png", np.full((40, 40), 1000) + (np.arange(40) % 3))
    with pytest.raises(CorruptImageError, match=rf"blank\.png: dynamic range collapsed.*fewer than {MIN_GRAY_LEVELS}"):
        read_grayscale(flat)


def test_truncated_dicom_is_an_error_naming_the_file(tmp_path, chest):
    path = dicom_with(tmp_path, as_bits(chest, 12), 12)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptImageError, match=rf"{path}: cannot decode image"):
        read_grayscale(path)

import json

import numpy as np
import pytest

from chunkflow.chunk import Chunk, LayerType
from chunkflow.errors import ChunkflowError
from chunkflow.image.normalize import (
    clip_levels,
    contrast_lookup_table,
    normalize_intensity,
    normalize_section_contrast,
    quantize,
    read_levels,
    section_histogram,
)
from tests.conftest import GALA, read_stack


def histogram(**counts) -> np.ndarray:
    """A 256-bin histogram from counts given as v10=5, v20=80, ..."""
    hist = np.zeros(256, dtype=np.int64)
    for key, count in counts.items():
        hist[int(key[1:])] = count
    return hist


# 10 voxels of 10, 80 of 20, 10 of 30, and 1000 zeros that must not count
KNOWN = histogram(v0=1000, v10=10, v20=80, v30=10)


@pytest.mark.parametrize(
    "lower, upper, levels",
    [
        (0.0, 0.0, (10, 30)),  # the smallest and largest nonzero value
        (0.05, 0.05, (10, 30)),  # 10 % lie at 10 and at 30: clipping 5 % keeps them
        (0.1, 0.1, (20, 20)),  # exactly 10 % below 20 and above 20 may be clipped
        (0.0999, 0.0999, (10, 30)),
        (0.5, 0.0, (20, 30)),
    ],
)
def test_clip_levels_of_a_known_histogram(lower, upper, levels):
    assert clip_levels(KNOWN, lower, upper) == levels


def test_clip_levels_ignore_zero_and_empty_sections():
    assert clip_levels(histogram(v0=5), 0.01, 0.01) is None
    assert clip_levels(histogram(v0=10**6, v7=1), 0.01, 0.01) == (7, 7)


def test_lookup_table_stretches_and_keeps_zero():
    table = contrast_lookup_table((10, 30), 1, 255)
    assert table.dtype == np.uint8
    assert table[0] == 0 and table[5] == 1 and table[10] == 1
    assert table[20] == 128 and table[30] == 255 and table[200] == 255
    assert np.all(np.diff(table[1:].astype(int)) >= 0)
    # a single-valued or empty section is left as it is
    np.testing.assert_array_equal(contrast_lookup_table((20, 20)), np.arange(256))
    np.testing.assert_array_equal(contrast_lookup_table(None), np.arange(256))


def two_sections() -> np.ndarray:
    """Section 0 has the KNOWN histogram (10 zeros); section 1 holds 100 and 200 half each."""
    first = np.array([0] * 10 + [10] * 10 + [20] * 80 + [30] * 10, dtype=np.uint8)
    second = np.array([100] * 55 + [200] * 55, dtype=np.uint8)
    rng = np.random.default_rng(0)
    return np.stack([rng.permutation(first), rng.permutation(second)]).reshape(2, 10, 11)


def test_section_contrast_on_the_fly():
    array = two_sections()
    chunk = Chunk(array, (5, 10, 20), (40, 4, 4))
    out = normalize_section_contrast(chunk, 0.05, 0.05)
    assert out.dtype == np.uint8 and out.voxel_offset == (5, 10, 20)
    assert out.voxel_size == (40, 4, 4) and out.is_image
    expected_first = {0: 0, 10: 1, 20: 128, 30: 255}
    np.testing.assert_array_equal(out.array[0], np.vectorize(expected_first.get)(array[0]))
    np.testing.assert_array_equal(out.array[1], np.where(array[1] == 100, 1, 255))
    assert out.array is not array and array.max() == 200  # the input is untouched


def test_section_contrast_minval_maxval():
    out = normalize_section_contrast(Chunk(two_sections()), 0.05, 0.05, minval=50, maxval=150)
    assert set(np.unique(out.array[0])) == {0, 50, 100, 150}


def write_levels(folder, histograms: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for z, hist in histograms.items():
        record = {"levels": [int(c) for c in hist], "patch_size": [512, 512, 1]}
        (folder / str(z)).write_text(json.dumps(record))


def test_section_contrast_from_level_files(tmp_path):
    array = two_sections()
    # global histograms that differ from the chunk's own: levels (10, 110) and (100, 300->255)
    write_levels(
        tmp_path / "levels" / "1",
        {5: histogram(v10=1, v110=1), 6: histogram(v0=99, v100=1, v255=1)},
    )
    levels_path = f"file://{tmp_path}/levels/1"
    assert read_levels(levels_path, [5])[5][110] == 1
    out = normalize_section_contrast(Chunk(array, (5, 0, 0)), 0.0, 0.0, levels_path=levels_path)
    lut0 = np.rint((np.arange(256) - 10) / 100 * 254 + 1).clip(1, 255)
    np.testing.assert_array_equal(out.array[0], np.where(array[0] > 0, lut0[array[0]], 0))
    assert set(np.unique(out.array[1])) == {1, np.rint(100 / 155 * 254 + 1)}
    # a plain local folder works as well
    again = normalize_section_contrast(
        Chunk(array, (5, 0, 0)), 0.0, 0.0, levels_path=str(tmp_path / "levels" / "1")
    )
    np.testing.assert_array_equal(again.array, out.array)


def test_all_zero_sections_need_no_level_file(tmp_path):
    """A cutout grown past the volume's edge has zero sections at z < 0: no histogram there."""
    array = two_sections()
    write_levels(tmp_path / "lv", {5: histogram(v10=1, v110=1), 6: histogram(v100=1, v255=1)})
    padded = np.concatenate([np.zeros((2, *array.shape[1:]), np.uint8), array])
    out = normalize_section_contrast(
        Chunk(padded, (3, 0, 0)), 0.0, 0.0, levels_path=f"{tmp_path}/lv"
    )
    alone = normalize_section_contrast(
        Chunk(array, (5, 0, 0)), 0.0, 0.0, levels_path=f"{tmp_path}/lv"
    )
    assert not out.array[:2].any()
    np.testing.assert_array_equal(out.array[2:], alone.array)


def test_missing_or_bad_level_file(tmp_path):
    write_levels(tmp_path / "lv", {0: histogram(v1=1)})
    chunk = Chunk(two_sections())
    with pytest.raises(ChunkflowError, match=r"histogram .*lv/1 is missing") as err:
        normalize_section_contrast(chunk, levels_path=f"file://{tmp_path}/lv")
    assert "\n" not in str(err.value)
    (tmp_path / "lv" / "1").write_text('{"levels": [1, 2, 3]}')
    with pytest.raises(ChunkflowError, match="expected 256 counts"):
        normalize_section_contrast(chunk, levels_path=f"file://{tmp_path}/lv")
    (tmp_path / "lv" / "1").write_text("not json")
    with pytest.raises(ChunkflowError, match="'levels' list"):
        normalize_section_contrast(chunk, levels_path=f"file://{tmp_path}/lv")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lower_clip_fraction": 0.6, "upper_clip_fraction": 0.5}, "must be below 1"),
        ({"lower_clip_fraction": -0.1}, "`lower_clip_fraction` -0.1"),
        ({"upper_clip_fraction": 1.0}, "`upper_clip_fraction` 1.0"),
        ({"minval": 200, "maxval": 100}, "`minval` 200 and `maxval` 100"),
    ],
)
def test_section_contrast_bad_options(kwargs, message):
    with pytest.raises(ChunkflowError, match=message):
        normalize_section_contrast(Chunk(two_sections()), **kwargs)


def test_section_contrast_needs_uint8():
    with pytest.raises(ChunkflowError, match="uint8 image, got uint16"):
        normalize_section_contrast(Chunk(two_sections().astype(np.uint16)))


def test_section_histogram():
    hist = section_histogram(np.array([[0, 0, 5], [255, 5, 5]], dtype=np.uint8))
    assert hist.shape == (256,) and hist[0] == 2 and hist[5] == 3 and hist[255] == 1


# normalize-intensity -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype, values, expected",
    [
        (np.uint8, [0, 51, 255], [0.0, 0.2, 1.0]),
        (np.uint16, [0, 13107, 65535], [0.0, 0.2, 1.0]),
        (np.int8, [-128, -77, 127], [0.0, 0.2, 1.0]),
        (np.float64, [2.0, 3.0, 6.0], [0.0, 0.25, 1.0]),
        (np.float32, [-1.0, 0.0, 1.0], [0.0, 0.5, 1.0]),
    ],
)
def test_normalize_intensity_ranges(dtype, values, expected):
    array = np.array(values, dtype=dtype).reshape(1, 1, 3)
    chunk = Chunk(array, (1, 2, 3), (4, 5, 6), "image")  # uint16, int8: labels unless declared
    out = normalize_intensity(chunk)
    assert out.dtype == np.float32 and out.voxel_offset == (1, 2, 3) and out.voxel_size == (4, 5, 6)
    np.testing.assert_allclose(out.array.ravel(), expected, rtol=1e-6)
    assert out.array.min() >= 0 and out.array.max() <= 1


def test_normalize_intensity_constant_float_and_segmentation():
    out = normalize_intensity(Chunk(np.full((2, 2, 2), 0.7, dtype=np.float32)))
    assert not out.array.any()
    with pytest.raises(ChunkflowError, match="needs an image"):
        normalize_intensity(Chunk(np.ones((2, 2, 2), dtype=np.uint32)))


def test_normalize_intensity_ignores_non_finite_voxels():
    """The range comes from the finite values: one NaN no longer turns the image into zeros.
    NaN stays NaN (there is no value to scale), -inf and +inf become 0 and 1."""
    values = np.array([2.0, 3.0, 6.0, np.nan, -np.inf, np.inf], dtype=np.float32)
    out = normalize_intensity(Chunk(values.reshape(1, 2, 3))).array.ravel()
    np.testing.assert_allclose(out[:3], [0.0, 0.25, 1.0])
    assert np.isnan(out[3]) and out[4] == 0.0 and out[5] == 1.0
    gala = Chunk(read_stack(GALA / "test-image.h5")[:4].astype(np.float32))
    clean = normalize_intensity(gala).array
    gala.array[1, 10, 10] = np.nan
    dirty = normalize_intensity(gala).array
    assert np.isnan(dirty).sum() == 1
    dirty[1, 10, 10] = clean[1, 10, 10]
    np.testing.assert_allclose(dirty, clean, atol=1e-6)
    constant = np.array([0.7, 0.7, np.nan, np.inf], np.float32).reshape(1, 1, 4)
    out = normalize_intensity(Chunk(constant)).array.ravel()
    assert out[:2].tolist() == [0.0, 0.0] and np.isnan(out[2]) and out[3] == 1.0


# quantize ------------------------------------------------------------------------------------
def affinities() -> Chunk:
    affs = np.zeros((3, 1, 1, 4), dtype=np.float32)
    affs[0, 0, 0] = [0.0, 1.0, 0.5, 0.2]  # z
    affs[1, 0, 0] = [0.2, 0.0, 1.0, 1.5]  # y (1.5 is clipped to 1)
    affs[2, 0, 0] = [0.6, 0.0, 0.0, -0.5]  # x
    return Chunk(affs, (0, 2, 4), (40, 4, 4))


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("xy", [102, 0, 128, 128]),  # mean(y, x) = .4, 0, .5, .5: averaged, then clipped
        ("z", [0, 255, 128, 51]),
        ("mean", [68, 85, 128, 102]),  # (0+.2+.6)/3, 1/3, 1.5/3, (.2+1.5-.5)/3
    ],
)
def test_quantize_modes(mode, expected):
    out = quantize(affinities(), mode)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 4) and out.is_image
    assert out.voxel_offset == (0, 2, 4) and out.voxel_size == (40, 4, 4)
    assert out.array.ravel().tolist() == expected


def test_quantize_one_channel_clips_and_rounds():
    values = np.array([-0.3, 0.0, 0.5, 0.999, 1.7, np.nan], dtype=np.float32).reshape(1, 1, 6)
    expected = [0, 0, 128, 255, 255, 0]
    assert quantize(Chunk(values)).array.ravel().tolist() == expected
    assert quantize(Chunk(values[None]), "z").array.ravel().tolist() == expected


def test_quantize_errors():
    with pytest.raises(ChunkflowError, match="float map"):
        quantize(Chunk(np.zeros((1, 2, 2), dtype=np.uint8)))
    two = Chunk(np.zeros((2, 1, 2, 2), dtype=np.float32), layer_type=LayerType.PROBABILITY_MAP)
    with pytest.raises(ChunkflowError, match="`mode` xy needs a 3-channel"):
        quantize(two, "xy")
    assert quantize(two, "mean").shape == (1, 2, 2)

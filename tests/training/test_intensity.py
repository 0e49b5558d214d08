"""Intensity augmentations: dtype kept, value ranges, seeds, images only."""

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.training.intensity import (
    defect_augment,
    intensity_augment,
    noise_augment,
    normalize,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def image(dtype=np.float32, shape=(6, 16, 16), seed=0):
    unit = rng(seed).random(shape) * 0.6 + 0.2
    if np.dtype(dtype).kind == "f":
        return Chunk(unit.astype(dtype), (1, 2, 3))
    integers = np.rint(unit * np.iinfo(dtype).max).astype(dtype)
    return Chunk(integers, (1, 2, 3), layer_type="image")  # uint16 is labels unless declared


def test_normalize_by_dtype_range():
    np.testing.assert_allclose(
        normalize(Chunk(np.array([[[0, 51, 255]]], np.uint8))).array, [[[0, 0.2, 1]]], atol=1e-7
    )
    wide = Chunk(np.array([[[65535]]], np.uint16), layer_type="image")  # else labels
    assert normalize(wide).array[0, 0, 0] == 1.0
    np.testing.assert_allclose(
        normalize(Chunk(np.array([[[-128, 127]]], np.int8), layer_type="image")).array, [[[0, 1]]]
    )
    floats = Chunk(np.array([[[-2.0, 0.5, 7.0]]]), (1, 2, 3))
    out = normalize(floats)
    assert out.dtype == np.float32 and out.voxel_offset == (1, 2, 3)
    np.testing.assert_array_equal(out.array, floats.array)
    assert normalize(Chunk(np.array([[[True, False]]]))).array.tolist() == [[[1.0, 0.0]]]
    with pytest.raises(ChunkflowError, match="not on a segmentation"):
        normalize(Chunk(np.ones((2, 2, 2), np.uint32)))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_intensity_augment(dtype):
    chunk = image(dtype)
    unit = normalize(chunk).array
    same = intensity_augment(chunk, rng(), scale=(1, 1), shift=(0, 0))
    assert same.dtype == chunk.dtype and same.voxel_offset == (1, 2, 3)
    np.testing.assert_allclose(same.array, chunk.array, atol=1e-6)
    brighter = normalize(intensity_augment(chunk, rng(), scale=(1, 1), shift=(0.1, 0.1))).array
    np.testing.assert_allclose(brighter, np.clip(unit + 0.1, 0, 1), atol=1 / 255)
    contrast = normalize(intensity_augment(chunk, rng(), scale=(2, 2), shift=(0, 0))).array
    expected = np.clip(unit.mean() + (unit - unit.mean()) * 2, 0, 1)
    np.testing.assert_allclose(contrast, expected, atol=1 / 255)
    sections = normalize(intensity_augment(chunk, rng(1), z_section_wise=True)).array - unit
    assert np.ptp(sections.mean(axis=(1, 2))) > 0.01  # every section its own shift
    a, b = intensity_augment(chunk, rng(2)), intensity_augment(chunk, rng(2))
    np.testing.assert_array_equal(a.array, b.array)


def test_intensity_augmentations_take_images_only():
    labels = Chunk(np.ones((2, 4, 4), np.uint32))
    for augment in (intensity_augment, noise_augment, defect_augment):
        with pytest.raises(ChunkflowError, match="works on image chunks, not on a segmentation"):
            augment(labels, rng())


def test_noise_augment():
    flat = Chunk(np.full((4, 64, 64), 0.5, np.float32))
    noisy = noise_augment(flat, rng(), var=0.01).array
    assert noisy.std() == pytest.approx(0.1, rel=0.05) and noisy.mean() == pytest.approx(
        0.5, abs=0.01
    )
    sp = noise_augment(flat, rng(), mode="s&p", amount=0.2).array
    changed = sp != 0.5
    assert changed.mean() == pytest.approx(0.2, abs=0.02)
    assert set(np.unique(sp[changed])) == {0.0, 1.0}
    same = noise_augment(flat, rng(), mode="salt-and-pepper", amount=0.2).array
    np.testing.assert_array_equal(sp, same)
    for mode in ("poisson", "speckle"):
        out = noise_augment(image(np.uint8), rng(), mode=mode)
        assert out.dtype == np.uint8 and not np.array_equal(out.array, image(np.uint8).array)
    assert not np.array_equal(noisy, noise_augment(flat, rng(1)).array)
    with pytest.raises(ChunkflowError, match="unknown noise mode 'pink'"):
        noise_augment(flat, rng(), mode="pink")


def test_defect_augment():
    chunk = image(np.uint8, shape=(20, 16, 16))
    missing = defect_augment(chunk, rng(), prob_missing=1.0, prob_low_contrast=0.0)
    assert missing.dtype == np.uint8 and not missing.array.any()
    low = defect_augment(chunk, rng(), prob_missing=0.0, prob_low_contrast=1.0, contrast_scale=0.1)
    ratio = low.array.std(axis=(1, 2)) / chunk.array.std(axis=(1, 2))
    np.testing.assert_allclose(ratio, 0.1, atol=0.02)
    np.testing.assert_allclose(low.array.mean(axis=(1, 2)), chunk.array.mean(axis=(1, 2)), atol=1)
    mixed = defect_augment(chunk, rng(5), prob_missing=0.3, prob_low_contrast=0.3).array
    gone = ~mixed.any(axis=(1, 2))
    kept = (mixed == chunk.array).all(axis=(1, 2))
    assert gone.any() and kept.any() and (~gone & ~kept).any()
    again = defect_augment(chunk, rng(5), prob_missing=0.3, prob_low_contrast=0.3).array
    np.testing.assert_array_equal(mixed, again)
    nothing = defect_augment(chunk, rng(), prob_missing=0, prob_low_contrast=0)
    np.testing.assert_array_equal(nothing.array, chunk.array)
    with pytest.raises(ChunkflowError, match="exceeds 1"):
        defect_augment(chunk, rng(), prob_missing=0.6, prob_low_contrast=0.6)


@pytest.mark.parametrize("section_wise", [False, True])
def test_one_nan_voxel_stays_one(section_wise):
    """Means ignore non-finite voxels: a NaN stays where it is instead of spreading through the
    mean to every voxel (of the chunk, or of its section)."""
    clean = image(np.float32)
    dirty = image(np.float32)
    dirty.array[2, 3, 4] = np.nan
    a = intensity_augment(clean, rng(4), z_section_wise=section_wise).array
    b = intensity_augment(dirty, rng(4), z_section_wise=section_wise).array
    assert np.isnan(b).sum() == 1 and np.isnan(b[2, 3, 4])
    b[2, 3, 4] = a[2, 3, 4]
    np.testing.assert_allclose(b, a, atol=0.01)  # the mean moved by one voxel's worth at most
    low = defect_augment(dirty, rng(), prob_missing=0, prob_low_contrast=1).array
    assert np.isnan(low).sum() == 1 and np.isfinite(low[2]).sum() == low[2].size - 1

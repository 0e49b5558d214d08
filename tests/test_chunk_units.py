"""One unit-range rule: every integer dtype goes into [0, 1] by `to_unit` and back by
`from_unit`, and every caller that converts (synthetic chunks, `cast(rescale=True)`, the
intensity augmentations, normalize) gives what the rule gives.

The way back is the inverse of the way in: v = round(min + u * (max - min)) over the dtype's
whole range, so that signed dtypes span min..max (not 0..max) and 1 lands on max exactly for
32- and 64-bit dtypes too.
"""

import numpy as np
import pytest

from chunkflow.chunk import Chunk, LayerType, from_unit, to_unit
from chunkflow.errors import ChunkflowError
from chunkflow.image.normalize import normalize_intensity, quantize
from chunkflow.image.thumbnail import thumbnail_image
from chunkflow.training.intensity import (
    defect_augment,
    intensity_augment,
    noise_augment,
    normalize,
)

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"]


def samples(dtype) -> np.ndarray:
    """The ends, zero, the middle and a spread of values of `dtype`, as (1, 1, n)."""
    info = np.iinfo(dtype)
    if info.bits <= 16:
        values = np.arange(info.min, info.max + 1, dtype=np.int64)
    else:
        spread = np.linspace(float(info.min), float(info.max), 1001)[1:-1]
        values = [info.min, info.min + 1, 0, 1, info.max // 2, info.max - 1, info.max]
        values = np.concatenate([np.array(values, dtype), spread.astype(dtype)])
    return np.asarray(values, dtype).reshape(1, 1, -1)


def tolerance(dtype) -> int:
    """How far a value may move through float32 units: nothing up to 16 bits, else about
    (max - min) * 2^-22 (three float32 roundings of to_unit)."""
    info = np.iinfo(dtype)
    return 0 if info.bits <= 16 else 2 ** (info.bits - 22)


def assert_back(dtype, got: np.ndarray, values: np.ndarray) -> None:
    info = np.iinfo(dtype)
    assert got.dtype == np.dtype(dtype)
    assert info.min <= got.min() and got.max() <= info.max
    # the ends are exact for every dtype; the rest within the precision of float32 units
    flat, want = got.ravel(), values.ravel()
    assert flat[want == info.min].tolist() == [info.min] * int((want == info.min).sum())
    assert flat[want == info.max].tolist() == [info.max] * int((want == info.max).sum())
    error = np.abs(flat.astype(object) - want.astype(object))
    assert max(error) <= tolerance(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_to_unit_spans_the_dtype_range_onto_0_1(dtype):
    values = samples(dtype)
    unit = to_unit(values)
    assert unit.dtype == np.float32
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert np.all(np.diff(unit.ravel()[np.argsort(values.ravel(), kind="stable")]) >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_unit_is_the_inverse_of_to_unit(dtype):
    values = samples(dtype)
    assert_back(dtype, from_unit(to_unit(values), dtype), values)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cast_with_rescale_follows_the_rule(dtype):
    values = samples(dtype)
    unit = Chunk(to_unit(values))
    got = np.asarray(unit.cast(dtype, rescale=True))
    assert_back(dtype, got, values)
    np.testing.assert_array_equal(got, from_unit(np.asarray(unit), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_intensity_augmentations_follow_the_rule(dtype):
    info = np.iinfo(dtype)
    values = samples(dtype)
    image = Chunk(values, layer_type=LayerType.IMAGE)
    rng = np.random.default_rng(0)
    # no noise: to_unit and back
    assert_back(dtype, np.asarray(noise_augment(image, rng, "gaussian", var=0.0)), values)
    # shifted past either end: saturates at the dtype's ends, never wraps around
    up = np.asarray(intensity_augment(image, rng, (1.0, 1.0), (1.5, 1.5)))
    down = np.asarray(intensity_augment(image, rng, (1.0, 1.0), (-1.5, -1.5)))
    assert up.dtype == down.dtype == np.dtype(dtype)
    assert set(up.ravel().tolist()) == {info.max}
    assert set(down.ravel().tolist()) == {info.min}
    # a missing section is unit 0: the dtype's min
    missing = np.asarray(defect_augment(image, rng, prob_missing=1.0, prob_low_contrast=0.0))
    assert set(missing.ravel().tolist()) == {info.min}


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalizers_and_synthetic_chunks_follow_the_rule(dtype):
    values = samples(dtype)
    image = Chunk(values, layer_type=LayerType.IMAGE)
    np.testing.assert_array_equal(np.asarray(normalize(image)), to_unit(values))
    np.testing.assert_array_equal(np.asarray(normalize_intensity(image)), to_unit(values))
    # a thumbnail: into [0, 1] and onto uint8, min black and max white
    thumbnail = np.asarray(thumbnail_image(image))
    np.testing.assert_array_equal(thumbnail, from_unit(to_unit(values), np.uint8))
    assert thumbnail.ravel()[[values.argmin(), values.argmax()]].tolist() == [0, 255]
    # quantize: a float map onto uint8 by the same rule, clipped
    quantized = np.asarray(quantize(Chunk(to_unit(values)), "mean"))
    np.testing.assert_array_equal(quantized, from_unit(to_unit(values), np.uint8))
    # a synthetic chunk is a pattern in [0, 1] put through from_unit: it spans the whole range
    random = Chunk.create((4, 8, 8), dtype, "random", seed=1)
    unit = np.random.default_rng(1).random((4, 8, 8))
    np.testing.assert_array_equal(np.asarray(random), from_unit(unit, dtype))
    sin = np.asarray(Chunk.create((8, 16, 16), dtype, "sin"))
    info = np.iinfo(dtype)
    assert info.min <= sin.min() and sin.max() <= info.max
    assert float(sin.max()) > 0.9 * float(info.max)  # the pattern reaches near 1 here


def test_bool_and_float_targets():
    unit = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
    quantized = quantize(Chunk(np.concatenate([unit, [-1, 2, np.nan]]).reshape(1, 1, -1)))
    assert np.asarray(quantized).ravel().tolist() == [0, 64, 128, 191, 255, 0, 255, 0]
    assert from_unit(unit, bool).tolist() == [False, False, False, True, True]
    assert to_unit(from_unit(unit, bool)).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert from_unit(unit, "float64").dtype == np.float64
    np.testing.assert_array_equal(from_unit(unit, "float32"), unit)


def test_values_outside_0_1_are_refused_or_clipped():
    unit = np.array([-0.5, 0.0, 1.0, 1.5, np.nan], np.float32)
    with pytest.raises(ChunkflowError, match=r"3 of 5 values are outside \[0, 1\]"):
        from_unit(unit, "uint8")
    with pytest.raises(ChunkflowError, match="1 of 5 values are NaN"):
        from_unit(unit, "int16", clip=True)
    assert from_unit(unit[:4], "int8", clip=True).tolist() == [-128, -128, 127, 127]
    # floats keep their values, out of range too, unless clipped
    assert from_unit(unit[:4], "float32").tolist() == [-0.5, 0.0, 1.0, 1.5]
    assert from_unit(unit[:4], "float32", clip=True).tolist() == [0.0, 0.0, 1.0, 1.0]

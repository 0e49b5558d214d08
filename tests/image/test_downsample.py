from collections import Counter

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.image.downsample import (
    check_divisible,
    downsample,
    downsample_upload,
    mip_range,
    pyramid,
)
from chunkflow.io.precomputed import create_info, read_precomputed, write_precomputed


def reference_mean(array: np.ndarray, factor) -> np.ndarray:
    fz, fy, fx = factor
    z, y, x = array.shape[-3:]
    blocks = array.reshape(*array.shape[:-3], z // fz, fz, y // fy, fy, x // fx, fx)
    return blocks.astype(np.float64).mean(axis=(-5, -3, -1))


def reference_mode(array: np.ndarray, factor) -> np.ndarray:
    """Most frequent label per block; ties to the label met first in z, y, x order (igneous's
    rule for 2x2x2 blocks, ours for factors other than 1 2 2)."""
    fz, fy, fx = factor
    out = np.zeros(tuple(s // f for s, f in zip(array.shape, factor)), dtype=array.dtype)
    for z, y, x in np.ndindex(out.shape):
        block = array[z * fz : (z + 1) * fz, y * fy : (y + 1) * fy, x * fx : (x + 1) * fx]
        labels = block.ravel().tolist()
        counts = Counter(labels)
        top = max(counts.values())
        out[z, y, x] = next(label for label in labels if counts[label] == top)
    return out


def reference_countless(array: np.ndarray) -> np.ndarray:
    """The 2x2 (y, x) mode of igneous (tinybrain's COUNTLESS), block by block: in [[a, b], [c, d]]
    a if a == b or a == c, else b if b == c, else d."""
    out = np.zeros((array.shape[0], array.shape[1] // 2, array.shape[2] // 2), array.dtype)
    for z, y, x in np.ndindex(out.shape):
        (a, b), (c, d) = array[z, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].tolist()
        out[z, y, x] = a if a in (b, c) else b if b == c else d
    return out


def reference(array: np.ndarray, factor) -> np.ndarray:
    if tuple(factor) == (1, 2, 2):
        return reference_countless(array)
    return reference_mode(array, factor)


def tie_heavy_labels(shape, dtype, seed=7) -> np.ndarray:
    """Four labels (0 and the dtype's largest among them): many 2-2 ties and all-different
    2x2 blocks."""
    palette = np.array([0, 1, np.iinfo(dtype).max, 5], dtype=dtype)
    return palette[np.random.default_rng(seed).integers(0, 4, shape)]


def test_image_exact_averages_1_2_2():
    array = np.array(
        [[[1, 2, 10, 10], [3, 4, 10, 12], [0, 0, 255, 255], [0, 1, 255, 254]]], dtype=np.uint8
    )
    out = downsample(Chunk(array, (0, 4, 8), (40, 4, 4)), (1, 2, 2))
    assert out.dtype == np.uint8 and out.is_image
    # means 2.5, 10.5, 0.25, 254.75: integer means are truncated
    assert out.array.tolist() == [[[2, 10], [0, 254]]]
    assert out.voxel_offset == (0, 2, 4) and out.voxel_size == (40, 8, 8)
    as_float = downsample(Chunk(array.astype(np.float32)), (1, 2, 2))
    assert as_float.array.tolist() == [[[2.5, 10.5], [0.25, 254.75]]]


def test_image_exact_averages_2_2_2_and_1_3_3():
    cube = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert downsample(Chunk(cube), (2, 2, 2)).array.tolist() == [[[3.5]]]
    nine = np.arange(18, dtype=np.uint8).reshape(1, 3, 6)  # blocks 0..2,6..8,12..14 etc.
    out = downsample(Chunk(nine, (5, 3, 6), (1, 1, 1)), (1, 3, 3))
    assert out.array.tolist() == [[[7, 10]]]
    assert out.voxel_offset == (5, 1, 2) and out.voxel_size == (1, 3, 3)


@pytest.mark.parametrize("factor", [(1, 2, 2), (2, 2, 2), (1, 3, 3), (2, 1, 1), (3, 3, 3)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_averages_match_a_reference(factor, dtype):
    array = (np.random.default_rng(3).random((6, 12, 12)) * 250).astype(dtype)
    out = downsample(Chunk(array, layer_type="image"), factor)
    expected = reference_mean(array, factor)
    if dtype == np.float32:
        np.testing.assert_allclose(out.array, expected, rtol=1e-6)
    else:
        np.testing.assert_array_equal(out.array, np.floor(expected))


def test_affinity_map_channels_averaged_separately():
    affs = np.random.default_rng(1).random((3, 2, 4, 4)).astype(np.float32)
    out = downsample(Chunk(affs, (0, 0, 0), (40, 4, 4)), (1, 2, 2))
    assert out.shape == (3, 2, 2, 2) and out.is_affinity_map
    np.testing.assert_allclose(out.array, reference_mean(affs, (1, 2, 2)), rtol=1e-6)


def test_segmentation_mode_handmade_blocks_and_ties():
    # one z section of 2x2 blocks, each written [[a, b], [c, d]]: igneous's (COUNTLESS) ties
    blocks = [
        [[7, 7], [7, 3]],  # majority -> 7
        [[5, 9], [9, 9]],  # majority even though the first voxel differs -> 9
        [[1, 2], [2, 1]],  # 2-2 tie on the diagonals -> 2 (b == c)
        [[4, 3], [3, 4]],  # 2-2 tie -> 3, not the first voxel's 4
        [[8, 6], [5, 0]],  # all different -> 0, the last voxel (d)
        [[0, 0], [6, 6]],  # 2-2 tie in rows -> 0 (a == b)
        [[6, 0], [6, 0]],  # 2-2 tie in columns -> 6 (a == c)
        [[3, 1], [2, 1]],  # pair b == d, the rest single -> 1 (d)
    ]
    array = np.concatenate([np.array(b, dtype=np.uint64) for b in blocks], axis=1)[None]
    out = downsample(Chunk(array, (0, 0, 0), (1, 1, 1), "segmentation"), (1, 2, 2))
    assert out.dtype == np.uint64 and out.is_segmentation
    assert out.array.tolist() == [[[7, 9, 2, 3, 0, 0, 6, 1]]]
    as_float = downsample(Chunk(array.astype(np.float32), layer_type="segmentation"), (1, 2, 2))
    assert as_float.array.tolist() == [[[7, 9, 2, 3, 0, 0, 6, 1]]]


def test_segmentation_mode_2_2_2_and_1_3_3_ties():
    cube = np.array([[[5, 6], [6, 5]], [[7, 7], [5, 6]]], dtype=np.uint32)  # 5: 3, 6: 3, 7: 2
    assert downsample(Chunk(cube), (2, 2, 2)).array.tolist() == [[[5]]]
    cube[0, 0, 0] = 9  # now 6: 3, 5: 2 -> 6
    assert downsample(Chunk(cube), (2, 2, 2)).array.tolist() == [[[6]]]
    nine = np.array([[[3, 1, 1], [2, 2, 3], [0, 0, 3]]], dtype=np.uint32)  # 3 wins with 3
    assert downsample(Chunk(nine), (1, 3, 3)).array.tolist() == [[[3]]]
    nine[0, 2, 2] = 4  # 3, 1, 2, 0 twice each: 3 comes first
    assert downsample(Chunk(nine), (1, 3, 3)).array.tolist() == [[[3]]]


@pytest.mark.parametrize(
    "factor", [(1, 2, 2), (2, 2, 2), (1, 3, 3), (2, 1, 1), (3, 3, 3), (1, 1, 2)]
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64, np.int64])
def test_segmentation_mode_matches_the_documented_rule(factor, dtype):
    # three labels in small blocks: plenty of ties
    labels = np.random.default_rng(7).integers(0, 3, (6, 6, 12)).astype(dtype)
    out = downsample(Chunk(labels, layer_type="segmentation"), factor)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.array, reference(labels, factor))


@pytest.mark.parametrize("factor, tinybrain_factor", [((1, 2, 2), (2, 2, 1)), ((2, 2, 2),) * 2])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64])
@pytest.mark.parametrize("kind", ["random", "ties"])
def test_segmentation_pyramid_is_igneous_s(factor, tinybrain_factor, dtype, kind):
    # igneous downsamples a task's labels by tinybrain.downsample_segmentation(labels in x, y,
    # z order, factor, num_mips=...): our pyramid must be the same, voxel for voxel
    import tinybrain

    rng = np.random.default_rng(11)
    shape = (8, 16, 24)
    if kind == "random":  # mostly distinct labels, spread over the whole dtype
        info = np.iinfo(dtype)
        labels = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        labels[:, 0::4] = labels[:, 1::4]  # and some vertical pairs
    else:
        labels = tie_heavy_labels(shape, dtype)
    chunk = Chunk(labels, (8, 16, 24), (40, 8, 8), "segmentation")
    levels = pyramid(chunk, factor, 3)
    theirs = tinybrain.downsample_segmentation(labels.T, tinybrain_factor, num_mips=3)
    assert len(levels) == 3
    for level, expected in zip(levels, theirs):
        assert level.dtype == dtype and level.array.flags.c_contiguous
        np.testing.assert_array_equal(level.array, expected.T)
    np.testing.assert_array_equal(levels[0].array, reference(labels, factor))
    np.testing.assert_array_equal(downsample(chunk, factor).array, levels[0].array)


def test_segmentation_mode_of_channels_and_other_factors():
    labels = tie_heavy_labels((2, 4, 4, 8), np.uint32)
    out = downsample(Chunk(labels, layer_type="segmentation"), (1, 2, 2))
    assert out.shape == (2, 4, 2, 4)
    for channel in range(2):
        np.testing.assert_array_equal(out.array[channel], reference_countless(labels[channel]))
    # factors where igneous strides or repeats 2x2 steps: the block's mode, first label on ties
    for factor in [(1, 4, 4), (2, 1, 1)]:
        chunk = Chunk(labels[0], layer_type="segmentation")
        np.testing.assert_array_equal(
            downsample(chunk, factor).array, reference_mode(labels[0], factor)
        )


def test_bool_chunks_use_the_mode():
    mask = np.array([[[True, True], [False, True]]])
    out = downsample(Chunk(mask), (1, 2, 2))
    assert out.dtype == np.bool_ and out.array.tolist() == [[[True]]]


def test_factor_1_1_1_is_a_copy():
    chunk = Chunk(np.arange(8, dtype=np.uint8).reshape(2, 2, 2), (1, 1, 1), (2, 2, 2))
    out = downsample(chunk, (1, 1, 1))
    np.testing.assert_array_equal(out.array, chunk.array)
    assert out.array is not chunk.array and out.voxel_offset == (1, 1, 1)


def test_image_pyramid_truncates_once_per_mip():
    chunk = Chunk(
        np.random.default_rng(0).integers(0, 255, (4, 16, 16), dtype=np.uint8),
        (0, 16, 32),
        (40, 4, 4),
    )
    levels = pyramid(chunk, (1, 2, 2), 3)
    assert [c.shape for c in levels] == [(4, 8, 8), (4, 4, 4), (4, 2, 2)]
    assert levels[2].voxel_offset == (0, 2, 4) and levels[2].voxel_size == (40, 32, 32)
    # every mip is the truncated mean of its full-resolution block, not of rounded means
    for k, level in enumerate(levels, 1):
        f = 2**k
        exact = chunk.array.reshape(4, 16 // f, f, 16 // f, f).astype(float).mean(axis=(2, 4))
        difference = exact - level.array
        assert difference.min() >= 0 and difference.max() < 1
    assert levels[0].array.tolist() == downsample(chunk, (1, 2, 2)).array.tolist()


@pytest.mark.parametrize(
    "offset, size, factor, mips, message",
    [
        ((0, 1, 0), (2, 4, 4), (1, 2, 2), 1, "voxel offset 0 1 0 is not divisible by 1 2 2"),
        ((0, 0, 0), (2, 4, 6), (1, 2, 2), 2, "size 2 4 6 is not divisible by 1 4 4"),
        ((0, 0, 0), (2, 4, 4), (1, 3, 3), 1, "size 2 4 4 is not divisible by 1 3 3"),
    ],
)
def test_not_divisible(offset, size, factor, mips, message):
    chunk = Chunk(np.zeros(size, dtype=np.uint8), offset)
    with pytest.raises(ChunkflowError, match=message) as err:
        check_divisible(chunk, factor, mips)
    assert "\n" not in str(err.value)
    if mips == 1:
        with pytest.raises(ChunkflowError, match=message):
            downsample(chunk, factor)


@pytest.mark.parametrize("factor", [(0, 2, 2), (1, -2, 2), (1, 2), (1.5, 2, 2)])
def test_bad_factor(factor):
    with pytest.raises(ChunkflowError, match="`factor` .*expected three positive integers"):
        downsample(Chunk(np.zeros((2, 4, 4), dtype=np.uint8)), factor)


def test_mip_range_excludes_stop():
    assert mip_range(0) == range(1, 5)
    assert mip_range(0, 1, 5) == range(1, 5)
    assert mip_range(2) == range(3, 7)
    assert mip_range(1, 3, 4) == range(3, 4)
    with pytest.raises(ChunkflowError, match="`stop_mip` 2 must be above `start_mip` 2"):
        mip_range(0, 2, 2)
    with pytest.raises(ChunkflowError, match="`start_mip` 1 must be above the chunk's mip 1"):
        mip_range(1, 1, 3)


def test_downsample_upload_segmentation_adds_scales(tmp_path):
    labels = np.random.default_rng(2).integers(1, 4, (8, 16, 16)).astype(np.uint32)
    chunk = Chunk(labels, (8, 16, 16), (40, 4, 4), "segmentation")
    path = f"file://{tmp_path}/seg"
    write_precomputed(chunk, path, block_size=(8, 16, 16))
    assert downsample_upload(chunk, path, (2, 2, 2), 0, 1, 3) == [1, 2]
    for mip, expected in zip((1, 2), pyramid(chunk, (2, 2, 2), 2)):
        back = read_precomputed(path, expected.bbox, mip)
        assert back.is_segmentation and back.voxel_size == expected.voxel_size
        np.testing.assert_array_equal(back.array, expected.array)


def test_downsample_upload_checks_existing_scales(tmp_path):
    path = f"file://{tmp_path}/img"
    create_info(path, (4, 16, 16), (40, 4, 4), max_mip=1, factor=(1, 2, 2))
    chunk = Chunk(np.ones((4, 16, 16), dtype=np.uint8), (0, 0, 0), (40, 4, 4))
    with pytest.raises(ChunkflowError, match="mip 1 has voxel size 40 8 8 .* gives 80 8 8"):
        downsample_upload(chunk, path, (2, 2, 2), 0, 1, 2)
    with pytest.raises(ChunkflowError, match="does not downsample"):
        downsample_upload(chunk, path, (1, 1, 1))
    with pytest.raises(ChunkflowError, match="mip 3 does not exist"):
        downsample_upload(chunk, path, (1, 2, 2), 3)
    assert downsample_upload(chunk, path, (1, 2, 2), 0, 2, 3) == [2]
    back = read_precomputed(path, pyramid(chunk, (1, 2, 2), 2)[1].bbox, 2)
    assert back.voxel_size == (40, 16, 16) and (back.array == 1).all()

"""Augmentations: raw and labels stay aligned, ids and dtypes are kept, seeds repeat."""

import math

import numpy as np
import pytest
from scipy import ndimage

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.training.augment import ElasticTransform, elastic_augment, simple_augment

BLOCK = 4


def rng(seed=0):
    return np.random.default_rng(seed)


def position_sample(shape=(12, 40, 40), offset=(10, 20, 30)):
    """Labels that encode their position, and raw chunks equal to the z, y and x coordinate.

    labels = z * 10000 + (y // 4) * 100 + x // 4: a label names its z section and its 4 x 4
    block; raw_z, raw_y, raw_x are float images holding the coordinate itself.
    """
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    labels = (z * 10000 + (y // BLOCK) * 100 + x // BLOCK + 1).astype(np.uint64)
    chunks = {"labels": Chunk(labels, offset, (40, 4, 4))}
    for name, values in (("raw_z", z), ("raw_y", y), ("raw_x", x)):
        chunks[name] = Chunk(values.astype(np.float32), offset, (40, 4, 4), "image")
    return chunks


def assert_aligned(out, slack=0.0):
    """Each raw coordinate lies in the block its label names (up to `slack` voxels)."""
    labels = out["labels"].array.astype(np.int64) - 1
    z, by, bx = labels // 10000, (labels // 100) % 100, labels % 100
    np.testing.assert_allclose(out["raw_z"].array, z, atol=slack + 1e-4)
    for name, block in (("raw_y", by), ("raw_x", bx)):
        raw = out[name].array
        assert (raw >= BLOCK * block - slack - 1e-4).all(), name
        assert (raw <= BLOCK * block + BLOCK - 1 + slack + 1e-4).all(), name


def assert_kept(chunks, out, shape=None):
    for name, chunk in chunks.items():
        assert out[name].dtype == chunk.dtype and out[name].layer_type == chunk.layer_type
        assert out[name].voxel_size == chunk.voxel_size
        assert out[name].shape == (shape or chunk.shape)
    assert set(np.unique(out["labels"].array)) <= set(np.unique(chunks["labels"].array))


# simple_augment --------------------------------------------------------------------------------


def test_simple_augment_keeps_raw_and_labels_aligned():
    chunks = position_sample()
    seen = set()
    for seed in range(12):
        out = simple_augment(chunks, rng(seed))
        assert_aligned(out)
        assert_kept(chunks, out)
        assert out["labels"].voxel_offset == (10, 20, 30)
        # a mirror and transpose only permutes voxels: the same ids, each as often
        np.testing.assert_array_equal(
            np.sort(out["labels"].array, axis=None), np.sort(chunks["labels"].array, axis=None)
        )
        seen.add(out["labels"].array.tobytes())
        assert out["labels"].array.flags.c_contiguous
    assert len(seen) > 6  # 16 possible outcomes


def test_simple_augment_seeds_axes_and_channels():
    chunks = position_sample()
    a, b = simple_augment(chunks, rng(5)), simple_augment(chunks, rng(5))
    np.testing.assert_array_equal(a["labels"].array, b["labels"].array)
    outcomes = {simple_augment(chunks, rng(s))["raw_y"].array.tobytes() for s in range(6)}
    assert len(outcomes) > 1
    fixed = simple_augment(chunks, rng(1), mirror_axes=(), transpose_axes=())
    np.testing.assert_array_equal(fixed["labels"].array, chunks["labels"].array)
    # only x may flip: z and y stay
    flipped = simple_augment(chunks, rng(3), mirror_axes=(2,), transpose_axes=())
    np.testing.assert_array_equal(flipped["raw_y"].array, chunks["raw_y"].array)
    two = np.stack([chunks["raw_y"].array, -chunks["raw_y"].array])
    multi = {"image": Chunk(two, (10, 20, 30), (40, 4, 4)), "labels": chunks["labels"]}
    out = simple_augment(multi, rng(4))
    assert out["image"].shape == two.shape
    np.testing.assert_array_equal(out["image"].array[1], -out["image"].array[0])


def test_simple_augment_refuses_bad_input():
    chunks = position_sample(shape=(4, 8, 12))
    with pytest.raises(ChunkflowError, match="unequal sizes \\(8 x 12"):
        simple_augment(chunks, rng(), transpose_axes=(1, 2))
    assert simple_augment(chunks, rng(), transpose_axes=(0,))["labels"].shape == (4, 8, 12)
    moved = {"a": chunks["raw_y"], "b": Chunk(chunks["raw_x"].array, (0, 0, 0))}
    with pytest.raises(ChunkflowError, match="'b' .* and chunk 'a' .* have different voxel sizes"):
        simple_augment(moved, rng(), transpose_axes=())
    affs = Chunk(np.zeros((3, 4, 8, 12), np.float32))
    with pytest.raises(ChunkflowError, match="affinity maps"):
        simple_augment({"affs": affs}, rng(), transpose_axes=())
    with pytest.raises(ChunkflowError, match="distinct axes"):
        simple_augment(chunks, rng(), mirror_axes=(0, 3))


# ElasticTransform ------------------------------------------------------------------------------


def test_zero_jitter_no_rotation_is_the_identity():
    transform = ElasticTransform.random(
        (12, 40, 40), rng(), jitter_sigma=(0, 0, 0), rotation_interval=(0, 0)
    )
    assert transform.source_bbox == BoundingBox((0, 0, 0), (12, 40, 40))
    raw = Chunk(rng().integers(0, 256, (12, 40, 40)).astype(np.uint8), (1, 2, 3))
    chunks = position_sample()
    for chunk in (raw, *chunks.values(), Chunk(np.stack([raw.array, raw.array]), (1, 2, 3))):
        out = transform.apply(chunk, chunk.voxel_offset)
        assert out.dtype == chunk.dtype and out.voxel_offset == chunk.voxel_offset
        np.testing.assert_array_equal(out.array, chunk.array)


@pytest.mark.parametrize(
    "options",
    [
        dict(),  # gunpowder's defaults: yx jitter and rotation, sections stay planar
        dict(jitter_sigma=(1.0, 3.0, 3.0), control_point_spacing=(4, 10, 10)),  # 3D warp
        dict(prob_slip=0.3, prob_shift=0.3, max_misalign=4, rotation_interval=(0.3, 0.3)),
    ],
)
def test_elastic_augment_keeps_raw_and_labels_aligned(options):
    chunks = position_sample()
    for seed in range(3):
        out = elastic_augment(chunks, rng(seed), output_size=(8, 24, 24), **options)
        assert_kept(chunks, out, shape=(8, 24, 24))
        assert out["labels"].voxel_offset == (12, 28, 38)  # centred: offset + (in - out) // 2
        # labels are picked at the nearest voxel, raw interpolated at the exact coordinate
        assert_aligned(out, slack=0.5)
        assert len(np.unique(out["labels"].array)) > 30


@pytest.mark.parametrize("planar", [True, False])
def test_linear_interpolation_matches_scipy(planar):
    generator = rng(11)
    coordinates = generator.uniform(-3.0, 9.0, (3, 4, 5, 6)).astype(np.float32)
    coordinates[:, 0, 0] = np.round(coordinates[:, 0, 0])  # whole numbers, the max included
    coordinates[1:, 1, 1, 1] = 9.0
    if planar:
        coordinates[0] = np.array([2, 5, 0, 7]).reshape(4, 1, 1)
    transform = ElasticTransform(coordinates)
    box = transform.source_bbox
    assert box.start == tuple(np.floor(coordinates.reshape(3, -1).min(axis=1)))
    source = Chunk(generator.random(box.shape.prod).reshape(box.shape), box.start)
    expected = ndimage.map_coordinates(
        source.array, coordinates - np.reshape(box.start, (3, 1, 1, 1)), order=1
    )
    out = transform.apply(source, (0, 0, 0))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.array, expected, atol=1e-6)


def test_source_bbox_covers_what_apply_reads():
    transform = ElasticTransform.random(
        (6, 20, 20),
        rng(7),
        jitter_sigma=(0.5, 2.0, 2.0),
        control_point_spacing=(2, 8, 8),
        rotation_interval=(0.2, 0.6),
    )
    offset = np.array((100, 200, 300))
    needed = transform.source_bbox.shift(offset)
    assert needed.start[1] < 200 and needed.stop[1] > 220  # a rotation reads beyond the output
    big = Chunk(
        rng().random(needed.grow(5).shape.prod).astype(np.float32).reshape(needed.grow(5).shape),
        needed.grow(5).start,
    )
    labels = (big * 1000).astype(np.uint32)
    for chunk in (big, labels):
        exact = transform.apply(chunk.crop(needed), offset)
        np.testing.assert_array_equal(exact.array, transform.apply(chunk, offset).array)
        assert exact.shape == (6, 20, 20) and exact.voxel_offset == tuple(offset)
        for axis in range(3):
            for side in (0, 1):
                start, stop = list(needed.start), list(needed.stop)
                (start if side == 0 else stop)[axis] += 1 if side == 0 else -1
                with pytest.raises(ChunkflowError, match=f"reads {needed} but the chunk covers"):
                    transform.apply(chunk.crop(BoundingBox(start, stop)), offset)


def test_elastic_seeds_dtypes_and_reflection():
    raw = Chunk(rng().integers(0, 256, (10, 32, 32)).astype(np.uint8))
    labels = Chunk(rng().integers(1, 50, (10, 32, 32)).astype(np.uint32))
    mask = Chunk(rng().random((10, 32, 32)) > 0.5)
    chunks = {"raw": raw, "labels": labels, "mask": mask}
    a = elastic_augment(
        chunks, rng(3), rotation_interval=(0.7, 0.8), max_misalign=3, prob_shift=0.5
    )
    b = elastic_augment(
        chunks, rng(3), rotation_interval=(0.7, 0.8), max_misalign=3, prob_shift=0.5
    )
    c = elastic_augment(
        chunks, rng(4), rotation_interval=(0.7, 0.8), max_misalign=3, prob_shift=0.5
    )
    for name, chunk in chunks.items():
        # the same size as the input: the rotated corners are mirrored in from the inside
        assert a[name].shape == chunk.shape and a[name].dtype == chunk.dtype
        assert a[name].voxel_offset == chunk.voxel_offset
        np.testing.assert_array_equal(a[name].array, b[name].array)
        assert not np.array_equal(a[name].array, c[name].array)
    assert set(np.unique(a["labels"].array)) <= set(np.unique(labels.array))
    nearest = elastic_augment({"raw": raw}, rng(3), nearest=("raw",))
    assert set(np.unique(nearest["raw"].array)) <= set(np.unique(raw.array))


def test_elastic_transform_misalignment_shifts_whole_sections():
    transform = ElasticTransform.random(
        (10, 30, 30),
        rng(2),
        jitter_sigma=(0, 0, 0),
        rotation_interval=(0, 0),
        prob_slip=0.2,
        prob_shift=0.4,
        max_misalign=3,
    )
    assert transform.source_bbox.shape[0] == 10 and transform.source_bbox.shape[1] > 30
    coordinate = np.arange(-20, 50, dtype=np.float32)
    for axis in (1, 2):
        values = np.broadcast_to(
            coordinate.reshape((1, -1, 1) if axis == 1 else (1, 1, -1)), (10, 70, 70)
        )
        source = Chunk(values.copy(), (0, -20, -20), layer_type="image")
        out = transform.apply(source, (0, 0, 0)).array
        shifted = out - np.arange(30).reshape((1, -1, 1) if axis == 1 else (1, 1, -1))
        per_section = shifted[:, :1, :1]
        np.testing.assert_array_equal(shifted, np.broadcast_to(per_section, shifted.shape))
        assert len(np.unique(per_section)) > 1 and np.abs(per_section).max() <= 3 * 10
        np.testing.assert_array_equal(per_section, np.round(per_section))


def test_elastic_bad_options():
    with pytest.raises(ChunkflowError, match="must be positive"):
        ElasticTransform.random((4, 4, 4), rng(), control_point_spacing=(0, 4, 4))
    with pytest.raises(ChunkflowError, match="at most 1"):
        ElasticTransform.random((4, 4, 4), rng(), prob_slip=0.6, prob_shift=0.6)
    with pytest.raises(ChunkflowError, match="shape \\(3, z, y, x\\)"):
        ElasticTransform(np.zeros((2, 4, 4, 4)))
    chunks = position_sample(shape=(4, 8, 8))
    with pytest.raises(ChunkflowError, match="affinity maps"):
        elastic_augment({"affs": Chunk(np.zeros((3, 4, 8, 8), np.float32))}, rng())
    with pytest.raises(ChunkflowError, match="chunk 'b' .* have different voxel sizes"):
        elastic_augment({"a": chunks["labels"], "b": Chunk(np.zeros((4, 8, 9)))}, rng())
    moved = Chunk(np.zeros((4, 8, 9)), chunks["labels"].voxel_offset, (40, 4, 4))
    with pytest.raises(ChunkflowError, match="chunk 'b' .* do not cover the same voxels"):
        elastic_augment({"a": chunks["labels"], "b": moved}, rng())
    with pytest.raises(ChunkflowError, match="not augmented: mask"):
        elastic_augment(chunks, rng(), nearest=("mask",))


def test_rotation_interval_is_in_radians():
    transform = ElasticTransform.random(
        (1, 9, 9), rng(), jitter_sigma=(0, 0, 0), rotation_interval=(math.pi / 2, math.pi / 2)
    )
    chunks = position_sample(shape=(1, 9, 9), offset=(0, 0, 0))
    rotated = transform.apply(chunks["raw_y"], (0, 0, 0)).array[0]
    # a quarter turn about the centre: output y comes from input x, and vice versa
    np.testing.assert_allclose(rotated, np.rot90(chunks["raw_y"].array[0], k=-1), atol=1e-4)


def source_coordinates(transform: ElasticTransform) -> np.ndarray:
    """(3, z, y, x): where the transform reads each output voxel, found by warping images that
    hold their own coordinates (linear interpolation reproduces a linear image exactly)."""
    box = transform.source_bbox
    grids = np.meshgrid(
        *(np.arange(a, b, dtype=np.float32) for a, b in zip(box.start, box.stop)), indexing="ij"
    )
    return np.stack([transform.apply(Chunk(g, box.start), (0, 0, 0)).array for g in grids])


@pytest.mark.parametrize("voxel_size", [(1, 1, 1), (8, 8, 8)])
def test_default_warp_on_isotropic_voxels_is_as_smooth_along_z_as_in_plane(voxel_size):
    # control points 4 sections apart (gunpowder's tutorial value for 40 x 4 x 4 nm voxels)
    # on isotropic data move each section by ~0.4 voxels (up to ~2) against its neighbour:
    # a section misalignment that FIB-SEM data does not have
    z_steps, y_steps = [], []
    for seed in range(6):
        transform = ElasticTransform.random(
            (40, 40, 40), rng(seed), rotation_interval=(0, 0), voxel_size=voxel_size
        )
        in_plane = source_coordinates(transform)[1:]
        z_steps.append(np.abs(np.diff(in_plane, axis=1)).mean())
        y_steps.append(
            np.abs(np.diff(in_plane, axis=2) - np.array([1, 0]).reshape(2, 1, 1, 1)).mean()
        )
    assert max(y_steps) > 0.005  # the warp is not the identity
    assert np.mean(z_steps) < 2 * np.mean(y_steps), (z_steps, y_steps)


def test_default_control_point_spacing_is_the_same_world_distance_along_every_axis():
    # 40 voxels in y and x, as many nanometres along z: gunpowder's tutorial spacing (4, 40, 40)
    # for its 40 x 4 x 4 nm data, (40, 40, 40) for isotropic voxels
    for voxel_size, spacing in (((40, 4, 4), (4, 40, 40)), ((1, 1, 1), (40, 40, 40))):
        default = ElasticTransform.random((12, 60, 60), rng(5), voxel_size=voxel_size)
        explicit = ElasticTransform.random((12, 60, 60), rng(5), control_point_spacing=spacing)
        np.testing.assert_array_equal(source_coordinates(default), source_coordinates(explicit))
    chunks = position_sample()  # 40 x 4 x 4 nm
    default = elastic_augment(chunks, rng(2))
    explicit = elastic_augment(chunks, rng(2), control_point_spacing=(4, 40, 40))
    for name in chunks:
        np.testing.assert_array_equal(default[name].array, explicit[name].array)

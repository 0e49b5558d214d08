"""Context negotiation through the real entry point: operators that need voxels around their
output get them read from the data, pad only where it ends, and chunks combine by world
coordinates."""

import math

import h5py
import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5, write_h5
from chunkflow.training.augment import ElasticTransform
from chunkflow.training.margins import elastic_margin
from chunkflow.training.targets import add_affinities, grow_boundary
from tests.conftest import GALA, error_line, read_stack

IMAGE = GALA / "test-image.h5"  # 50 x 100 x 200
GT = GALA / "test-gt.lzf.h5"


def volume(path) -> Chunk:
    return Chunk(read_stack(path))


ELASTIC = (
    "--control-point-spacing 4 16 16 --jitter-sigma 0.5 2 2 --rotation-interval 20 70 "
    "--prob-slip 0.1 --max-misalign 2"
)
ELASTIC_KWARGS = dict(
    control_point_spacing=(4, 16, 16),
    jitter_sigma=(0.5, 2.0, 2.0),
    rotation_interval=(math.radians(20), math.radians(70)),
    prob_slip=0.1,
    max_misalign=2,
)


def test_elastic_on_a_sub_box_equals_the_warp_of_the_whole_volume(run_cli):
    """Read with context, the warp of a box is the same transform applied to the whole
    volume, then cropped: every voxel is real data, none mirrored in."""
    run_cli(
        f"read-h5 -f {IMAGE} -o image -t 20 30 60 -s 6 40 40 "
        f"read-h5 -f {GT} -o labels -t 20 30 60 -s 6 40 40 "
        f"elastic-augment -i image,labels --seed 4 {ELASTIC} "
        "write-h5 -i image -f image.h5 write-h5 -i labels -f labels.h5"
    )
    box = BoundingBox.from_delta((20, 30, 60), (6, 40, 40))
    transform = ElasticTransform.random(box.shape, np.random.default_rng(4), **ELASTIC_KWARGS)
    needed = transform.source_bbox.shift(box.start)
    grown = box.grow(elastic_margin(box.shape, (0.5, 2, 2), (0.35, 1.23), 2, True))
    assert grown.contains(needed) and not box.contains(needed)  # context was needed
    for name, path in (("image", IMAGE), ("labels", GT)):
        out = read_h5(f"{name}.h5")
        assert out.bbox == box
        expected = transform.apply(volume(path), box.start)
        np.testing.assert_array_equal(out.array, expected.array)


def test_elastic_output_size_is_centred_in_the_box_read(run_cli):
    run_cli(
        f"read-h5 -f {IMAGE} -o image -t 20 30 60 -s 8 48 48 "
        f"elastic-augment -i image --seed 1 --output-size 6 32 32 {ELASTIC} "
        "write-h5 -i image -f image.h5"
    )
    box = BoundingBox.from_delta((21, 38, 68), (6, 32, 32))
    out = read_h5("image.h5")
    assert out.bbox == box
    transform = ElasticTransform.random(box.shape, np.random.default_rng(1), **ELASTIC_KWARGS)
    np.testing.assert_array_equal(out.array, transform.apply(volume(IMAGE), box.start).array)


def test_affinities_and_grown_boundary_at_the_box_border_read_one_voxel_more(run_cli):
    """add-affinities reads the voxel before the box instead of masking the border slice;
    grow-boundary sees a boundary just outside; both equal the whole volume's, cropped."""
    run_cli(
        f"read-h5 -f {GT} -o labels -t 10 20 30 -s 4 24 24 "
        "grow-boundary -i labels -o grown --steps 2 "
        "add-affinities -i grown -o affs --mask-output-name mask "
        "add-affinities -i labels -o long -n '2,0,0;0,-3,0;0,0,4' "
        "write-h5 -i grown -f grown.h5 write-h5 -i affs -f affs.h5 write-h5 -i mask -f mask.h5 "
        "write-h5 -i long -f long.h5 write-h5 -i labels -f labels.h5"
    )
    box = BoundingBox.from_delta((10, 20, 30), (4, 24, 24))
    whole = volume(GT)
    grown = grow_boundary(whole, 2)
    np.testing.assert_array_equal(read_h5("grown.h5").array, grown.crop(box).array)
    affs = read_h5("affs.h5")
    assert affs.bbox == box
    np.testing.assert_array_equal(affs.array, add_affinities(grown)[0].crop(box).array)
    assert affs.array[:, 0].any()  # the first slices are affinities, not masked zeros
    assert read_h5("mask.h5").array.all()
    long = add_affinities(whole, [(2, 0, 0), (0, -3, 0), (0, 0, 4)])[0].crop(box)
    np.testing.assert_array_equal(read_h5("long.h5").array, long.array)
    # operators that need no context see the box read, not the context around it
    assert read_h5("labels.h5").bbox == box


@pytest.mark.parametrize("mode", ["zero", "reflect", "edge"])
def test_pad_modes_where_the_data_ends(run_cli, mode):
    """At the volume's start the labels end: --pad fills the voxel before, the affinities to
    it are masked."""
    run_cli(
        f"read-h5 -f {GT} -o labels -t 0 0 0 -s 4 16 16 "
        f"add-affinities -i labels -o affs --mask-output-name mask --pad {mode} "
        "write-h5 -i affs -f affs.h5 write-h5 -i mask -f mask.h5"
    )
    labels = volume(GT).crop(BoundingBox((0, 0, 0), (4, 16, 16)))
    padded = np.pad(labels.array, [(1, 0)] * 3, mode={"zero": "constant"}.get(mode, mode))
    expected = add_affinities(Chunk(padded, (-1, -1, -1)))[0].crop(labels.bbox)
    affs, mask = read_h5("affs.h5").array, read_h5("mask.h5").array
    np.testing.assert_array_equal(affs, expected.array)
    for c in range(3):  # the first slice along the offset's axis links a padded voxel
        first = np.take(mask[c], 0, axis=c)
        assert not first.any() and np.delete(mask[c], 0, axis=c).all()


def test_without_pad_the_end_of_the_data_is_one_line(run_cli):
    result = run_cli(
        f"read-h5 -f {GT} -o labels -t 0 0 0 -s 4 16 16 add-affinities -i labels", expect=1
    )
    assert error_line(result) == (
        "chunkflow: error: add-affinities: chunk 'labels' must cover -1-4_-1-16_-1-16 for the "
        "context of add-affinities but the data covers only 0-4_0-16_0-16: read less near the "
        "data's edge, or choose a pad mode (zero, reflect, edge)"
    )


def test_pad_operator_pads_to_what_comes_after(run_cli):
    """`pad` with no size pads to the context the operators after it need: the reader reads
    what the data has, pad fills the rest (gunpowder's Pad)."""
    run_cli(
        f"read-h5 -f {GT} -o labels -t 0 0 0 -s 4 16 16 pad -i labels -o labels --mode edge "
        "add-affinities -i labels -o affs write-h5 -i affs -f affs.h5"
    )
    labels = volume(GT).crop(BoundingBox((0, 0, 0), (4, 16, 16)))
    padded = Chunk(np.pad(labels.array, [(1, 0)] * 3, mode="edge"), (-1, -1, -1))
    np.testing.assert_array_equal(
        read_h5("affs.h5").array, add_affinities(padded)[0].crop(labels.bbox).array
    )


def test_pad_operator_by_margin_and_to_a_box(run_cli, tmp_path):
    write_h5(Chunk(np.arange(8, dtype=np.uint8).reshape(2, 2, 2), (5, 5, 5)), "small.h5")
    run_cli(
        "read-h5 -f small.h5 -o a pad -i a -o b --margin 0 1 2 --mode reflect "
        "pad -i a -o c --bbox 5-7_4-7_5-6 write-h5 -i b -f b.h5 write-h5 -i c -f c.h5"
    )
    b, c = read_h5("b.h5"), read_h5("c.h5")
    original = np.arange(8).reshape(2, 2, 2)
    assert b.bbox == BoundingBox((5, 4, 3), (7, 8, 9))
    np.testing.assert_array_equal(
        b.array, np.pad(original, [(0, 0), (1, 1), (2, 2)], mode="reflect")
    )
    assert c.bbox == BoundingBox((5, 4, 5), (7, 7, 6))
    np.testing.assert_array_equal(c.array, np.pad(original, [(0, 0), (1, 0), (0, 0)])[:, :, :1])


def test_chunks_at_different_offsets_combine_by_world_coordinates(run_cli, tmp_path):
    """gt offset from raw, in world units (gunpowder's `offset` attribute): the augmentation
    works on the region both cover."""
    image, labels = read_stack(IMAGE)[:8, :40, :40], read_stack(GT)[:8, :40, :40]
    with h5py.File(tmp_path / "sample.h5", "w") as f:
        f["raw"] = image
        f["raw"].attrs.update(resolution=(4, 4, 4), offset=(0, 0, 0))
        f["gt"] = labels[2:, 8:, 4:]
        f["gt"].attrs.update(resolution=(4, 4, 4), offset=(8, 32, 16))
    run_cli(
        "read-h5 -f sample.h5 -d raw -o image read-h5 -f sample.h5 -d gt -o labels "
        "simple-augment -i image,labels --seed 3 --transpose-axes '' "
        "write-h5 -i image -f image.h5 write-h5 -i labels -f labels.h5"
    )
    out_image, out_labels = read_h5("image.h5"), read_h5("labels.h5")
    assert out_image.bbox == out_labels.bbox == BoundingBox((2, 8, 4), (8, 40, 40))
    assert not np.array_equal(out_labels.array, labels[2:, 8:, 4:])  # the seed flips some axis
    # the same flips on both: image and labels stay aligned
    for axes in ([0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]):
        if np.array_equal(out_labels.array, np.flip(labels[2:, 8:, 4:], axes)):
            np.testing.assert_array_equal(out_image.array, np.flip(image[2:, 8:, 4:], axes))
            break
    else:
        raise AssertionError("the labels are not a mirror image of the gt")


def test_chunks_that_do_not_overlap_are_one_line(run_cli):
    result = run_cli(
        "create-chunk -s 4 8 8 -o image create-chunk -s 4 8 8 -t uint32 --voxel-offset 4 0 0 "
        "-o labels simple-augment -i image,labels",
        expect=1,
    )
    line = error_line(result)
    assert line.startswith("chunkflow: error: simple-augment (task ")
    assert "the chunks do not overlap in world coordinates: 'image' 0-4_0-8_0-8" in line
    assert "'labels' 4-8_0-8_0-8" in line


def test_random_location_keeps_the_context_inside_the_data(run_cli, tmp_path):
    """Boxes drawn at random, seeded, with the context the chain needs inside the bounds: an
    elastic warp then never pads; the same seed draws the same boxes."""

    def boxes(folder, seed):
        (tmp_path / folder).mkdir()
        run_cli(
            f"random-location -f {IMAGE} -s 4 32 32 -n 4 --seed {seed} "
            f"read-h5 -f {IMAGE} -o image elastic-augment -i image --seed 1 {ELASTIC} "
            f"write-h5 -i image -f {folder}/"
        )
        return sorted(p.name for p in (tmp_path / folder).iterdir())

    first, again, other = boxes("a", 5), boxes("b", 5), boxes("c", 6)
    assert first == again and first != other and len(first) == 4
    bounds = BoundingBox((0, 0, 0), (50, 100, 200))
    margin = elastic_margin((4, 32, 32), (0.5, 2, 2), (0.35, 1.23), 2, True)
    for name in first:
        box = BoundingBox.from_string(name)
        assert box.shape == (4, 32, 32) and bounds.contains(box.grow(margin))


def test_random_location_rejects_boxes_by_a_mask(run_cli, tmp_path):
    mask = np.zeros((50, 100, 200), np.uint8)
    mask[5:45, 20:95, 40:190] = 1
    write_h5(Chunk(mask), "mask.h5")
    (tmp_path / "out").mkdir()
    run_cli(
        f"random-location -f {IMAGE} -s 4 16 16 -n 5 --seed 2 --mask mask.h5 --min-masked 1 "
        "create-chunk -o x write-h5 -i x -f out/"
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 5
    inside = BoundingBox((5, 20, 40), (45, 95, 190))
    assert all(inside.contains(BoundingBox.from_string(n)) for n in names)
    result = run_cli(
        "random-location -r 0-4_0-16_0-16 -s 4 16 16 --mask mask.h5 --tries 3 create-chunk",
        expect=1,
    )
    assert "no box of size 4,16,16 in 0-4_0-16_0-16 passed the mask in 3 tries" in error_line(
        result
    )


def test_inference_reads_the_margin_its_patches_crop(run_cli):
    """--read-context: the reader reads the margin (read box), the output covers the box it
    was asked for (write box); at the data's end --pad, else one line."""
    common = (
        "inference -i image -o out --framework identity --patch-size 4 16 16 "
        "--patch-overlap 2 8 8 --num-output-channels 1 --read-context --device cpu"
    )
    run_cli(f"read-h5 -f {IMAGE} -o image -t 10 20 30 -s 8 32 32 {common} write-h5 -i out -f a.h5")
    out, box = read_h5("a.h5"), BoundingBox.from_delta((10, 20, 30), (8, 32, 32))
    assert out.bbox == box
    expected = read_stack(IMAGE)[box.to_slices()] / 255
    np.testing.assert_allclose(out.array[0], expected, atol=1e-6)
    at_start = f"read-h5 -f {IMAGE} -o image -t 0 0 0 -s 8 32 32 {common}"
    line = error_line(run_cli(at_start, expect=1))
    assert "chunk 'image' must cover -2-10_-8-40_-8-40 for the context of inference" in line
    run_cli(f"{at_start} --pad reflect write-h5 -i out -f b.h5")
    out = read_h5("b.h5")
    assert out.bbox == BoundingBox((0, 0, 0), (8, 32, 32))
    np.testing.assert_allclose(out.array[0], read_stack(IMAGE)[:8, :32, :32] / 255, atol=1e-6)

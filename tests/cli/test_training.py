"""Training operators through the real entry point: each in a chain, equal to the library."""

import math

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.io.h5 import read_h5
from chunkflow.training.augment import simple_augment
from chunkflow.training.intensity import (
    defect_augment,
    intensity_augment,
    noise_augment,
    normalize,
)
from chunkflow.training.margins import elastic_with_context
from chunkflow.training.targets import add_affinities, balance_labels, grow_boundary
from tests.conftest import GALA, error_line, read_stack


def rng(seed):
    return np.random.default_rng(seed)


def gt_block():
    return Chunk(read_stack(GALA / "test-gt.lzf.h5")[:8, :48, :48])


def test_label_target_chain(run_cli, gala):
    """Read with the context the targets need: each equals the target of the whole volume,
    cropped to the box read."""
    run_cli(
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o labels -t 2 4 4 -s 8 48 48 "
        "grow-boundary -i labels -o grown --steps 2 --only-xy "
        "add-affinities -i grown -o affs --mask-output-name affs_mask "
        "add-affinities -i labels -o long -n '1,0,0;0,1,0;0,0,1;0,0,-3' "
        "balance-labels -i affs -o weights --mask affs_mask --clip 0.1 0.9 "
        "write-h5 -i grown -f grown.h5 write-h5 -i affs -f affs.h5 "
        "write-h5 -i affs_mask -f mask.h5 write-h5 -i long -f long.h5 "
        "write-h5 -i weights -f weights.h5"
    )
    volume = Chunk(read_stack(GALA / "test-gt.lzf.h5"))
    box = BoundingBox.from_delta((2, 4, 4), (8, 48, 48))
    grown_volume = grow_boundary(volume, 2, True)
    grown = grown_volume.crop(box)
    affs, mask = (c.crop(box) for c in add_affinities(grown_volume))
    assert read_h5("grown.h5").dtype == volume.dtype and read_h5("grown.h5").bbox == box
    np.testing.assert_array_equal(read_h5("grown.h5").array, grown.array)
    np.testing.assert_array_equal(read_h5("affs.h5").array, affs.array)
    assert read_h5("mask.h5").array.all()  # every affinity links real voxels
    weights = read_h5("weights.h5")
    assert weights.dtype == np.float32 and weights.shape == (3, 8, 48, 48)
    np.testing.assert_array_equal(weights.array, balance_labels(affs, mask, (0.1, 0.9)).array)
    long = read_h5("long.h5")
    assert long.shape == (4, 8, 48, 48)
    neighborhood = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, -3)]
    np.testing.assert_array_equal(
        long.array, add_affinities(volume, neighborhood)[0].crop(box).array
    )


def test_augmentation_chain_equals_the_library(run_cli, gala):
    run_cli(
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o labels -t 0 0 0 -s 8 48 48 "
        "create-chunk -s 8 48 48 -o image "
        "simple-augment -i image,labels --seed 1 "
        "elastic-augment -i image,labels -o raw,seg --seed 2 --output-size 6 32 32 "
        "--control-point-spacing 4 16 16 --jitter-sigma 0 1.5 1.5 --rotation-interval 10 30 "
        "--prob-slip 0.1 --prob-shift 0.1 --max-misalign 2 "
        "intensity-augment -i raw -o bright --seed 3 --scale 0.8 1.2 --shift -0.2 0.2 "
        "--z-section-wise "
        "noise-augment -i bright -o noisy --seed 4 --mode s\\&p --amount 0.1 "
        "defect-augment -i noisy -o defects --seed 5 --prob-missing 0.2 "
        "--prob-low-contrast 0.3 --contrast-scale 0.5 "
        "normalize -i defects -o unit "
        "write-h5 -i seg -f seg.h5 write-h5 -i raw -f raw.h5 write-h5 -i unit -f unit.h5"
    )
    chunks = {"image": Chunk.create((8, 48, 48)), "labels": gt_block()}
    chunks = simple_augment(chunks, rng(1))
    out = elastic_with_context(  # no reader asked for context: centred in the input
        chunks,
        rng(2),
        output_size=(6, 32, 32),
        control_point_spacing=(4, 16, 16),
        jitter_sigma=(0, 1.5, 1.5),
        rotation_interval=(math.radians(10), math.radians(30)),
        prob_slip=0.1,
        prob_shift=0.1,
        max_misalign=2,
    )
    seg, raw = read_h5("seg.h5"), read_h5("raw.h5")
    assert seg.voxel_offset == raw.voxel_offset == (1, 8, 8)  # centred in the input
    np.testing.assert_array_equal(seg.array, out["labels"].array)
    np.testing.assert_array_equal(raw.array, out["image"].array)
    assert raw.dtype == np.uint8 and seg.dtype == np.int32
    image = intensity_augment(out["image"], rng(3), (0.8, 1.2), (-0.2, 0.2), True)
    image = noise_augment(image, rng(4), "s&p", amount=0.1)
    image = normalize(defect_augment(image, rng(5), 0.2, 0.3, 0.5))
    unit = read_h5("unit.h5")
    assert unit.dtype == np.float32 and unit.voxel_offset == (1, 8, 8)
    np.testing.assert_array_equal(unit.array, image.array)


def test_seed_repeats_a_run_and_advances_per_task(run_cli, tmp_path):
    def run(seed, folder):
        (tmp_path / folder).mkdir()
        run_cli(
            "generate-tasks -s 0 0 0 -z 2 16 32 -c 2 16 16 "
            f"create-chunk -t float32 -o image noise-augment -i image -o image {seed} "
            f"write-h5 -i image -f {folder}/"
        )
        return [read_h5(path).array for path in sorted((tmp_path / folder).glob("*.h5"))]

    first, again, other = run("--seed 7", "a"), run("--seed 7", "b"), run("--seed 8", "c")
    assert len(first) == 2 and not np.array_equal(first[0] - first[1], 0)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    unseeded = run("", "d")
    assert not np.array_equal(unseeded[0], first[0])


@pytest.mark.parametrize(
    "args, message",
    [
        ("add-affinities -i nope", "add-affinities (task 0-4_0-8_0-12): no chunk named 'nope'"),
        ("add-affinities -i labels -n '1,0;0,1,0'", "bad neighborhood '1,0;0,1,0'"),
        ("add-affinities -i labels -n 0,0,0", "chunk 'labels': the neighborhood offset (0, 0, 0)"),
        ("simple-augment -i image,labels", "cannot transpose axes 1,2 of unequal sizes (8 x 12"),
        ("simple-augment -i image,labels -o a", "-o names 1 chunk(s) (a) but -i names 2"),
        ("simple-augment -i image --mirror-axes 0,5", "bad axes '0,5'"),
        ("intensity-augment -i labels", "chunk 'labels': intensity-augment works on image chunks"),
        ("normalize -i labels", "not on a segmentation"),
        ("elastic-augment -i image,affs", "does not transform affinity maps ('affs')"),
        ("balance-labels -i affs --mask other", "the chunks do not overlap in world coordin"),
        ("add-affinities -i labels", "chunk 'labels' must cover -1-4_-1-8_-1-12 for the context"),
        ("elastic-augment -i image --rotation-interval 45 45", "for the context of elastic-aug"),
    ],
)
def test_bad_input_gives_one_line(run_cli, args, message):
    result = run_cli(
        "create-chunk -s 4 8 12 -o image create-chunk -s 4 8 12 -t uint32 -o labels "
        "create-chunk -s 4 8 12 -t float32 -c 3 -o affs "
        f"create-chunk -s 4 8 8 --voxel-offset 0 0 12 -o other {args}",
        expect=None,
    )
    assert result.code != 0
    assert message in error_line(result)


def test_default_control_point_spacing_follows_the_voxel_size(run_cli, gala):
    # the same world distance along every axis: gunpowder's tutorial (4, 40, 40) on 40x4x4 nm
    # voxels, (40, 40, 40) on isotropic ones
    labels = gt_block()
    for voxel_size, spacing in (((40, 4, 4), (4, 40, 40)), ((1, 1, 1), (40, 40, 40))):
        size = " ".join(map(str, voxel_size))
        run_cli(
            f"read-h5 -f {gala}/test-gt.lzf.h5 -o labels -t 0 0 0 -s 8 48 48 -x {size} "
            "elastic-augment -i labels --seed 2 --output-size 6 32 32 "
            "--rotation-interval 0 0 --jitter-sigma 0 2 2 write-h5 -i labels -f seg.h5"
        )
        chunk = Chunk(labels.array, labels.voxel_offset, voxel_size)
        expected = elastic_with_context(
            {"labels": chunk},
            rng(2),
            output_size=(6, 32, 32),
            control_point_spacing=spacing,
            rotation_interval=(0, 0),
        )
        np.testing.assert_array_equal(read_h5("seg.h5").array, expected["labels"].array)


def test_noise_modes_of_the_options_are_the_library_s():
    from chunkflow.cli.augment import NOISE_MODES
    from chunkflow.training import intensity

    assert set(NOISE_MODES) - {"salt-and-pepper"} == set(intensity.NOISE_MODES)

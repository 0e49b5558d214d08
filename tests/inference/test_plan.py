"""The inference run planner: patch number, chunk sizes, memory, blocks and shards."""

import dataclasses

import numpy as np
import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox, Cartesian
from chunkflow.inference.grid import PatchGrid
from chunkflow.inference.plan import default_block, factor_power, memory_bytes, plan_environment
from chunkflow.io.shards import partial_shards, shards_touched
from chunkflow.task_creation.layers import expected_scales, shard_shapes
from chunkflow.task_creation.region import region_at_mip

REGION = BoundingBox((4, 36, 36), (44, 228, 228))


def small_plan(**kwargs):
    options = dict(
        mip=0,
        max_mip=2,
        input_patch_size=(10, 72, 72),
        output_patch_size=(8, 64, 64),
        num_output_channels=3,
        max_ram_gb=0.02,
    )
    options.update(kwargs)
    return plan_environment(REGION, **options)


def check_plan(plan):
    """Every property the planner promises."""
    n = plan.patch_num
    grid = PatchGrid.create(
        plan.input_patch_size,
        plan.output_patch_size,
        plan.output_patch_overlap,
        plan.output_crop_margin,
        patch_num=n,
    )
    # (c) the patches tile the input chunk exactly
    assert plan.input_chunk_size == grid.chunk_size_for(n)
    assert plan.input_chunk_size == plan.output_chunk_size + plan.expand_margin_size * 2
    assert plan.expand_margin_size == grid.patch_crop_margin + grid.output_crop_margin
    # (b) aligned to the storage blocks and divisible by the downsampling factor
    assert not any(plan.output_chunk_size % plan.block_size)
    assert not any(plan.output_chunk_size % plan.downsample_factor)
    assert not any(plan.output_region.start % plan.downsample_factor)
    top = max(plan.max_mip, plan.thumbnail_mip or 0)
    assert plan.downsample_factor == (1, 2 ** (top - plan.mip), 2 ** (top - plan.mip))
    for level, block in enumerate(plan.block_sizes):
        if level > plan.mip:
            scaled = plan.output_chunk_size // (1, 2 ** (level - plan.mip), 2 ** (level - plan.mip))
            assert not any(scaled % block), (level, block, scaled)
    # (a) memory
    assert plan.memory_bytes == memory_bytes(
        plan.input_chunk_size,
        plan.patch_region_size,
        plan.output_chunk_size,
        plan.num_output_channels,
        4 if plan.dtype == "float32" else 2,
        plan.input_itemsize,
        plan.num_input_channels,
    )
    assert plan.memory_bytes * plan.safety_factor <= plan.max_ram_bytes
    # the tasks tile the output region exactly, inside the requested region
    assert plan.requested_region.contains(plan.output_region)
    bboxes = plan.bboxes
    assert len(bboxes) == plan.task_count == plan.grid_size.prod
    assert all(b.shape == plan.output_chunk_size for b in bboxes)
    count = np.zeros(tuple(plan.output_region.shape), dtype=np.int32)
    for b in bboxes:
        count[b.shift(-plan.output_region.start).to_slices()] += 1
    assert count.min() == count.max() == 1
    # our inference finds exactly patch_num patches and returns exactly the task bbox
    task = bboxes[-1]
    layout = grid.plan(task.grow(plan.expand_margin_size))
    assert len(layout.patches) == n.prod and layout.output_bbox == task


def test_small_plan_keeps_every_promise():
    plan = small_plan()
    check_plan(plan)
    assert plan.patch_crop_margin == (1, 4, 4)
    assert plan.output_patch_overlap == (4, 32, 32) and plan.output_crop_margin == (4, 32, 32)
    assert plan.downsample_factor == (1, 4, 4)
    assert plan.task_count > 1


@pytest.mark.parametrize(
    "options",
    [
        dict(max_ram_gb=0.2),
        dict(max_ram_gb=0.05, output_patch_overlap=(2, 16, 16), output_crop_margin=(0, 0, 0)),
        dict(max_ram_gb=0.05, thumbnail_mip=3, dtype="float16", num_input_channels=2),
        dict(max_ram_gb=0.05, block_size=(4, 32, 32), max_mip=1),
        dict(mip=1, max_mip=3, max_ram_gb=0.05),
    ],
)
def test_plans_with_other_settings(options):
    check_plan(small_plan(**options))


def test_more_ram_gives_larger_tasks():
    sizes = [small_plan(max_ram_gb=gb).output_chunk_size.prod for gb in (0.01, 0.03, 0.3)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_tutorial_example_plan():
    # chunkflow setup-env -r 14 -z 20 256 256 -c 3 -m 1 --thumbnail --max-mip 6 ...
    region = region_at_mip((0, 0, 0), size=(2000, 40960, 40960), mip=1)
    assert region == BoundingBox((0, 0, 0), (2000, 20480, 20480))
    plan = plan_environment(
        region,
        mip=1,
        max_mip=6,
        thumbnail_mip=6,
        output_patch_size=(20, 256, 256),
        num_output_channels=3,
        max_ram_gb=14,
    )
    check_plan_cheap(plan)
    assert plan.downsample_factor == (1, 32, 32)
    assert plan.coverage > 0.98
    assert 0.5 * 14e9 < plan.memory_with_safety <= 14e9  # uses most of the budget


def check_shards(plan, thumbnail=False):
    """Every task covers whole shards at every mip it writes, and no two tasks share one."""
    shapes = shard_shapes(plan, thumbnail)
    scales = expected_scales(plan, "raw", thumbnail)
    assert len(shapes) == len(scales) and all("sharding" in scale for scale in scales)
    voxel_bytes = (
        1 if thumbnail else plan.num_output_channels * (4 if plan.dtype == "float32" else 2)
    )
    written = [plan.thumbnail_mip] if thumbnail else range(plan.mip, plan.max_mip + 1)
    for level in written:
        shape = shapes[level]
        block = Cartesian.from_xyz(scales[level]["chunk_sizes"][0])
        assert shape.prod * voxel_bytes <= plan.shard_bytes or shape == block, level
        factor = factor_power(level - plan.mip)
        bounds = BoundingBox(plan.output_region.start // factor, plan.output_region.stop // factor)
        owners = {}
        for task in plan.bboxes:
            box = BoundingBox(task.start // factor, task.stop // factor)
            assert box.start * factor == task.start and box.shape * factor == task.shape
            assert partial_shards(box, bounds, shape) == [], (level, box, shape)
            for shard in shards_touched(box, bounds, shape):
                assert owners.setdefault(shard, task) == task, (level, shard)
        assert len(owners) == (bounds.shape // shape).prod
    return shapes


@pytest.mark.parametrize(
    "options",
    [
        dict(shard_bytes=200_000),
        dict(shard_bytes=3_500_000_000, thumbnail_mip=3, dtype="float16"),
        dict(shard_bytes=1, block_size=(4, 32, 32), max_mip=1),
        dict(  # one shard of 2 2 2 blocks a task at mip 0, two at mips 1 and 2
            shard_bytes=400_000,
            output_patch_overlap=(0, 0, 0),
            output_crop_margin=(0, 0, 0),
            block_size=(4, 32, 32),
            max_ram_gb=0.05,
        ),
        dict(shard_bytes=100_000, mip=1, max_mip=3, max_ram_gb=0.05),
    ],
)
def test_sharded_plans_align_tasks_to_shards_at_every_mip(options):
    plan = small_plan(**options)
    check_plan(plan)
    # shards are chosen to fit the tasks: the tasks are those of the unsharded plan
    assert dataclasses.replace(plan, shard_bytes=None) == small_plan(
        **{**options, "shard_bytes": None}
    )
    check_shards(plan)
    if plan.thumbnail_mip is not None:
        check_shards(plan, thumbnail=True)


def test_an_unsharded_plan_has_no_shards_and_a_large_task_large_ones():
    plain = small_plan()
    assert shard_shapes(plain) == ()
    assert not any("sharding" in scale for scale in expected_scales(plain, "raw"))
    # shards of many blocks where the task allows them: the tutorial's plan at its mip
    region = region_at_mip((0, 0, 0), size=(2000, 40960, 40960), mip=1)
    plan = plan_environment(
        region,
        mip=1,
        max_mip=6,
        output_patch_size=(20, 256, 256),
        num_output_channels=3,
        max_ram_gb=14,
        shard_bytes=3_500_000_000,
    )
    shapes = shard_shapes(plan)
    assert plan.output_chunk_size == (90, 1280, 1280) and shapes[1] == (90, 256, 256)
    assert (shapes[1] // plan.block_sizes[1]).prod == 32
    with pytest.raises(ChunkflowError, match="`shard_bytes` 0 must be positive"):
        small_plan(shard_bytes=0)


def check_plan_cheap(plan):
    assert plan.input_chunk_size == plan.output_chunk_size + plan.expand_margin_size * 2
    assert not any(plan.output_chunk_size % plan.block_size)
    assert not any(plan.output_chunk_size % plan.downsample_factor)
    assert plan.memory_with_safety <= plan.max_ram_bytes


def test_default_block():
    assert [default_block(s, 64) for s in (8, 40, 90, 96, 128, 1280, 70)] == [
        8,
        40,
        45,
        32,
        64,
        64,
        35,
    ]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_ram_gb=0.0001), "`max_ram_gb` 0.0001 GB is too small: the smallest task"),
        (dict(max_mip=8), "the region is too small along y for one task"),
        (
            dict(
                input_patch_size=(8, 256, 64),
                output_patch_size=(8, 256, 64),
                output_crop_margin=(0, 0, 0),
            ),
            "the region is too small along y for one task: the smallest task there is 256",
        ),
        (dict(output_crop_margin=(4, 33, 32)), "`output_crop_margin` 4 33 32: along y"),
        (dict(input_patch_size=(9, 72, 72)), "must be even"),
        (dict(mip=2, max_mip=1), "`max_mip` 1 is below `mip` 2"),
        (dict(thumbnail_mip=0), "`thumbnail_mip` 0 must be above `mip` 0"),
        (dict(output_patch_size=(8, 80, 64)), "is larger than `input_patch_size`"),
    ],
)
def test_bad_settings(options, message):
    with pytest.raises(ChunkflowError, match=message.replace("(", r"\(")):
        small_plan(**options)


def test_empty_region():
    with pytest.raises(ChunkflowError, match="is empty"):
        plan_environment(BoundingBox((0, 0, 0), (0, 10, 10)), output_patch_size=Cartesian(4, 4, 4))

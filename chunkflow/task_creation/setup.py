"""An inference run set up: its region and plan, its output layers, its tasks sent."""

from __future__ import annotations

import logging

from chunkflow.errors import ParameterError
from chunkflow.inference.plan import DEFAULT_VOXEL_SIZE, SetupPlan, patch_grid, plan_environment
from chunkflow.task_creation.dispatch import TaskSink

logger = logging.getLogger(__name__)


def plan_run(
    *,
    input_path=None,
    start=None,
    stop=None,
    size=None,
    mip=0,
    voxel_size=None,
    num_input_channels=None,
    sharded=False,
    shard_bytes=None,
    **planning,
) -> SetupPlan:
    """The plan of an inference run over the region of the input volume `input_path` (its
    bounds at `mip` shrunk by the cutout margin) and/or from `start` with `stop` or `size`
    (mip 0); the input gives the voxel size, item size and channels not given. `planning` goes
    to `plan_environment` (patch sizes, memory, mips, dtype, ...)."""
    from chunkflow.task_creation.region import inference_region, read_input

    if shard_bytes is not None and not sharded:
        raise ParameterError(f"`shard_bytes` {shard_bytes} needs `sharded`")
    if sharded:
        from chunkflow.io.shards import DEFAULT_SHARD_BYTES

        shard_bytes = shard_bytes or DEFAULT_SHARD_BYTES
    names = ("input_patch_size", "output_patch_size", "output_patch_overlap", "output_crop_margin")
    grid = patch_grid(*(planning.get(name) for name in names))
    margin = grid.read_margin
    source = read_input(input_path, mip) if input_path is not None else None
    region = inference_region(
        margin, source=source, input_path=input_path, start=start, stop=stop, size=size, mip=mip
    )
    plan = plan_environment(
        region,
        mip=mip,
        num_input_channels=num_input_channels or (source.num_channels if source else 1),
        input_itemsize=source.itemsize if source else 1,
        voxel_size=voxel_size or (source.voxel_size if source else DEFAULT_VOXEL_SIZE),
        shard_bytes=shard_bytes,
        **planning,
    )
    if source is not None and plan.voxel_size_at_mip != source.voxel_size_at_mip:
        logger.warning(
            "setup-env: the output voxel size at mip %d is %s, the input's %s",
            mip,
            " ".join(map(str, plan.voxel_size_at_mip)),
            " ".join(map(str, source.voxel_size_at_mip)),
        )
    return plan


def set_up(
    plan: SetupPlan,
    layer_path: str,
    sink: TaskSink,
    *,
    encoding="raw",
    thumbnail_path=None,
    overwrite=False,
    dry_run=False,
) -> list[str]:
    """Create the output layers of the plan and send its tasks to the sink (a sink that
    streams sends nothing); what was done, one line per step. A dry run does nothing."""
    from chunkflow.task_creation.layers import create_layers

    sink.check()
    if dry_run:
        return ["dry run, no info written and no task sent"]
    sink.open()  # first: a queue we cannot reach fails before anything is written
    done = create_layers(plan, layer_path, encoding, thumbnail_path, overwrite)
    if not sink.streams:
        done += sink.send(plan.bboxes)
    return done

"""Text for people and shells: the tables and command lines the command line prints.

Library functions return data; the CLI renders it here and prints it.
"""

from __future__ import annotations

import shlex


def _vec(v) -> str:
    return " ".join(str(int(x)) for x in v)


# ---------------------------------------------------------------------------------------------
# setup-env


def setup_report(plan, layer_path, thumbnail_path, encoding, command) -> str:
    """An inference plan (`chunkflow.inference.plan.SetupPlan`) for humans, then the worker
    command on its own last line."""
    lines = _layer_lines(plan, layer_path, thumbnail_path, encoding)
    lines += [
        f"region (mip {plan.mip}):       {plan.requested_region} "
        f"(size {_vec(plan.requested_region.shape)})",
        f"output region:        {plan.output_region} (size {_vec(plan.output_region.shape)}, "
        f"{plan.coverage:.1%} of the region)",
        f"tasks:                {plan.task_count} = {_vec(plan.grid_size)} of "
        f"{_vec(plan.output_chunk_size)}",
        f"--patch-num           {_vec(plan.patch_num)}",
        f"--input-patch-size    {_vec(plan.input_patch_size)}",
        f"--output-patch-size   {_vec(plan.output_patch_size)}",
        f"--output-patch-overlap {_vec(plan.output_patch_overlap)}",
        f"--output-crop-margin  {_vec(plan.output_crop_margin)}",
        f"--expand-margin-size  {_vec(plan.expand_margin_size)} (cutout)",
        f"input chunk size:     {_vec(plan.input_chunk_size)}",
        f"output chunk size:    {_vec(plan.output_chunk_size)} (the task bbox; divisible by "
        f"{_vec(plan.downsample_factor)})",
        f"memory per task:      {plan.memory_bytes / 1e9:.3g} GB x {plan.safety_factor:g} = "
        f"{plan.memory_with_safety / 1e9:.3g} GB <= {plan.max_ram_bytes / 1e9:g} GB",
        f"voxel utilization:    {plan.efficiency:.2f}",
        "worker command:",
        command,
    ]
    return "\n".join(lines)


def _layer_lines(plan, layer_path, thumbnail_path, encoding) -> list[str]:
    from chunkflow.task_creation.layers import shard_shapes

    sharded = ", sharded" if plan.sharded else ""
    lines = [
        f"output layer:         {layer_path} ({plan.dtype}, {plan.num_output_channels} "
        f"channel(s), {encoding}{sharded}, mips 0-{plan.max_mip}, block "
        f"{_vec(plan.block_size)} at mip {plan.mip})",
    ]
    if plan.sharded:
        shapes = shard_shapes(plan)
        lines.append(
            f"shard shape:          {_vec(shapes[plan.mip])} at mip {plan.mip} "
            f"({_vec(plan.output_chunk_size // shapes[plan.mip])} per task, at most "
            f"{plan.shard_bytes} bytes)"
        )
        if plan.max_mip > plan.mip:
            levels = range(plan.mip + 1, plan.max_mip + 1)
            lines.append(
                "shards by mip:        "
                + "; ".join(f"{level}: {_vec(shapes[level])}" for level in levels)
                + " (each tiles the task there)"
            )
    if thumbnail_path:
        shards = ""
        if plan.sharded:
            shape = shard_shapes(plan, thumbnail=True)[plan.thumbnail_mip]
            shards = f", shards of {_vec(shape)}"
        lines.append(
            f"thumbnail layer:      {thumbnail_path} (uint8, mip {plan.thumbnail_mip}{shards})"
        )
    return lines


def worker_command(
    plan,
    input_path: str | None,
    output_path: str,
    queue_name: str | None = None,
    task_file: str | None = None,
    thumbnail_path: str | None = None,
    framework: str = "universal",
    convnet_model: str | None = None,
    convnet_weight_path: str | None = None,
    visibility_timeout: int | None = None,
    endpoint_url: str | None = None,
    s3_endpoint: str | None = None,
) -> str:
    """The `chunkflow` command line a worker runs: fetch a task, cut out its input grown by the
    expand margin, infer exactly `patch_num` patches, save the task bbox, downsample it.
    `s3_endpoint` is the S3-compatible server the worker's s3:// paths go to."""
    q = shlex.quote
    words = ["chunkflow"]
    if s3_endpoint:
        words += ["--s3-endpoint", q(s3_endpoint)]
    words += ["--mip", str(plan.mip)]
    words += _source_words(plan, queue_name, task_file, visibility_timeout, endpoint_url)
    words += ["cutout", "-v", q(input_path or "INPUT_LAYER_PATH")]
    words += ["--expand-margin-size", _vec(plan.expand_margin_size)]
    words += _inference_words(plan, framework, convnet_model, convnet_weight_path)
    words += ["save", "-v", q(output_path)]
    if plan.max_mip > plan.mip:
        words += ["downsample-upload", "-v", q(output_path)]
        words += ["--start-mip", str(plan.mip + 1), "--stop-mip", str(plan.max_mip + 1)]
    if thumbnail_path and plan.thumbnail_mip is not None:
        words += ["quantize"]
        if plan.num_output_channels not in (1, 3):
            words += ["--mode", "mean"]
        words += ["-o", "thumbnail", "downsample-upload", "-i", "thumbnail", "-v"]
        words += [q(thumbnail_path), "--start-mip", str(plan.thumbnail_mip)]
        words += ["--stop-mip", str(plan.thumbnail_mip + 1)]
    if queue_name:
        words += ["delete-task-in-queue"]
    return " ".join(words)


def _source_words(plan, queue_name, task_file, visibility_timeout, endpoint_url) -> list[str]:
    """Where the worker's tasks come from: the queue, the task file, else the grid itself."""
    q = shlex.quote
    if queue_name:
        words = ["fetch-task", "-q", q(queue_name)]
        if visibility_timeout:
            words += ["--visibility-timeout", str(visibility_timeout)]
        if endpoint_url:
            words += ["--endpoint-url", q(endpoint_url)]
        return words
    if task_file:
        return ["fetch-task-from-file", "-f", q(task_file)]
    return [
        "generate-tasks",
        "--roi-start",
        _vec(plan.output_region.start),
        "--roi-size",
        _vec(plan.output_region.shape),
        "--chunk-size",
        _vec(plan.output_chunk_size),
    ]


def _inference_words(plan, framework, convnet_model, convnet_weight_path) -> list[str]:
    q = shlex.quote
    words = ["inference", "--framework", framework]
    if framework != "identity":
        words += ["--convnet-model", q(convnet_model or "MODEL_PATH")]
        if convnet_weight_path or not convnet_model:
            words += ["--convnet-weight-path", q(convnet_weight_path or "WEIGHT_PATH")]
    words += [
        "--input-patch-size",
        _vec(plan.input_patch_size),
        "--output-patch-size",
        _vec(plan.output_patch_size),
        "--output-patch-overlap",
        _vec(plan.output_patch_overlap),
        "--output-crop-margin",
        _vec(plan.output_crop_margin),
        "--patch-num",
        _vec(plan.patch_num),
        "--num-input-channels",
        str(plan.num_input_channels),
        "--num-output-channels",
        str(plan.num_output_channels),
    ]
    if plan.dtype != "float32":
        words += ["--dtype", plan.dtype]
    return words


# ---------------------------------------------------------------------------------------------
# segment-status


def segment_status_report(plan, done: dict, phases) -> str:
    """A segmentation job (`chunkflow.segmentation.blockwise.Plan`) and how far its `phases`
    are, as `chunkflow.segmentation.blockwise.status` says (`done`)."""
    total, merged = done["tasks"], done["merge"]
    lines = {p: f"{p:<10} {done[p]}/{total}" for p in ("fragments", "edges", "relabel")}
    lines["merge"] = "merge      " + (
        f"done: {merged['fragments']} fragments, {merged['edges']} edges, "
        f"{merged['objects']} objects"
        if merged
        else "not run"
    )
    head = f"{plan.mode} job: {plan.input_path} -> {plan.output_path}, {total} tasks"
    return "\n".join([head] + [lines[name] for name in phases])

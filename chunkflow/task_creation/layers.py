"""The output layers of an inference run: their info files, as the plan says."""

from __future__ import annotations

from chunkflow.errors import ChunkflowError, ParameterError
from chunkflow.geometry import Cartesian
from chunkflow.inference.plan import FACTOR, OUTPUT_DTYPES, SetupPlan, factor_power

INTEGER_ENCODINGS = ("compressed_segmentation", "jpeg", "png", "compresso", "crackle")


def expected_scales(plan: SetupPlan, encoding: str, thumbnail: bool = False) -> list[dict]:
    """The scales (cloud-volume x, y, z) of the output layer, or of its thumbnail layer; a
    sharded plan's scales are sharded in shards that tile the task at their mip."""
    from chunkflow.io.shards import add_sharding

    top = plan.thumbnail_mip if thumbnail else plan.max_mip
    blocks = plan.thumbnail_block_sizes if thumbnail else plan.block_sizes
    voxel_bytes = 1 if thumbnail else OUTPUT_DTYPES[plan.dtype] * plan.num_output_channels
    scales = []
    for level in range(top + 1):
        factor = factor_power(level)
        scale = {
            "resolution": list((plan.voxel_size * factor).xyz),
            "voxel_offset": list((plan.mip0_offset // factor).xyz),
            "size": list(plan.mip0_size.ceildiv(factor).xyz),
            "chunk_sizes": [list(blocks[level].xyz)],
            "encoding": "raw" if thumbnail else encoding,
        }
        if plan.sharded:
            add_sharding(scale, voxel_bytes, plan.shard_bytes, tile=plan.task_size_at(level))
        scales.append(scale)
    return scales


def shard_shapes(plan: SetupPlan, thumbnail: bool = False) -> tuple:
    """The shard shape (z, y, x voxels) of each mip of the output (or thumbnail) layer; empty
    for an unsharded plan."""
    from chunkflow.io.shards import shard_shape

    if not plan.sharded:
        return ()
    return tuple(
        shard_shape(
            scale["sharding"],
            Cartesian.from_xyz(scale["size"]),
            Cartesian.from_xyz(scale["chunk_sizes"][0]),
        )
        for scale in expected_scales(plan, "raw", thumbnail)
    )


def create_layers(
    plan: SetupPlan,
    output_path: str,
    encoding: str = "raw",
    thumbnail_path: str | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write the info of the output layer (and thumbnail layer). Returns what was done, one
    line per layer. An existing info is kept when it matches, else an error unless
    `overwrite`."""
    from chunkflow.chunk import LayerType

    if plan.dtype != "float32" and encoding == "fpzip":
        raise ParameterError(f"`encoding` fpzip stores float32, not {plan.dtype}")
    if encoding in INTEGER_ENCODINGS:
        raise ParameterError(
            f"`encoding` {encoding} cannot store the {plan.dtype} output map; use raw or fpzip"
        )
    layer_type = (
        LayerType.AFFINITY_MAP if plan.num_output_channels == 3 else LayerType.PROBABILITY_MAP
    )
    done = [
        _create_layer(
            output_path,
            plan,
            plan.dtype,
            plan.num_output_channels,
            layer_type,
            encoding,
            plan.max_mip,
            plan.block_sizes,
            expected_scales(plan, encoding),
            overwrite,
        )
    ]
    if thumbnail_path is not None:
        if plan.thumbnail_mip is None:
            raise ParameterError("`thumbnail_path` needs a plan with a thumbnail mip")
        done.append(
            _create_layer(
                thumbnail_path,
                plan,
                "uint8",
                1,
                LayerType.IMAGE,
                "raw",
                plan.thumbnail_mip,
                plan.thumbnail_block_sizes,
                expected_scales(plan, encoding, thumbnail=True),
                overwrite,
            )
        )
    return done


def _create_layer(
    path, plan, dtype, channels, layer_type, encoding, top, blocks, scales, overwrite
) -> str:
    from chunkflow.io.precomputed import create_info, open_volume, volume_exists

    if volume_exists(path) and not overwrite:
        info = open_volume(path, 0).info
        problem = _info_difference(info, dtype, channels, scales)
        if problem:
            raise ParameterError(
                f"{path}: an info exists and differs ({problem}); use `overwrite` to replace it"
            )
        return f"{path}: kept the existing info (it matches)"
    create_info(
        path,
        plan.mip0_size,
        plan.voxel_size,
        plan.mip0_offset,
        dtype,
        channels,
        layer_type,
        blocks[0],
        encoding,
        top,
        FACTOR,
    )
    vol = open_volume(path, 0, write=True)
    for level, block in enumerate(blocks):
        vol.info["scales"][level]["chunk_sizes"] = [list(block.xyz)]
        if "sharding" in scales[level]:
            vol.info["scales"][level]["sharding"] = scales[level]["sharding"]
    vol.commit_info()
    problem = _info_difference(vol.info, dtype, channels, scales)
    if problem:  # cloud-volume computed other scales than we did: a bug, not bad input
        raise ChunkflowError(f"{path}: the info written differs from the plan ({problem})")
    sharded = ", sharded" if plan.sharded else ""
    return f"{path}: created the info ({dtype}, {channels} channel(s), mips 0-{top}{sharded})"


def _info_difference(info: dict, dtype, channels, scales) -> str | None:
    if str(info.get("data_type")) != str(dtype):
        return f"data type {info.get('data_type')}, expected {dtype}"
    if int(info.get("num_channels", 0)) != channels:
        return f"{info.get('num_channels')} channels, expected {channels}"
    found = info.get("scales", [])
    if len(found) < len(scales):
        return f"{len(found)} scales, expected {len(scales)}"
    for level, (have, want) in enumerate(zip(found, scales)):
        if ("sharding" in have) != ("sharding" in want):
            return (
                f"mip {level} is {'sharded' if 'sharding' in have else 'unsharded'}, expected "
                f"{'sharded' if 'sharding' in want else 'unsharded'}"
            )
        for key, value in want.items():
            got = have.get(key)
            if key == "resolution":
                same = [float(v) for v in got] == [float(v) for v in value]
            else:
                same = got == value
            if not same:
                return f"mip {level} {key} {got}, expected {value}"
    return None

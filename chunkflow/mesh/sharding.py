"""Sharding of objects (meshes, skeletons) by id: `neuroglancer_uint64_sharded_v1`, murmurhash.

The parameters come from the number of objects (cloud-volume's sizing rule: shard indices of
8 KiB, minishard indices of 32 KiB) unless given, so every job of a merge phase that sees the
same objects derives the same sharding and may write the same `info`.
"""

from __future__ import annotations

import numpy as np

from chunkflow.errors import ChunkflowError


def sharding_spec(
    num_labels: int, shard_bits: int | None = None, minishard_bits: int | None = None
):
    """A cloud-volume ShardingSpecification for `num_labels` objects (gzip minishard indices)."""
    from cloudvolume.datasource.precomputed.sharding import (
        ShardingSpecification,
        compute_shard_params_for_hashed,
    )

    auto_shard, auto_minishard, preshift = compute_shard_params_for_hashed(num_labels)
    return ShardingSpecification(
        type="neuroglancer_uint64_sharded_v1",
        preshift_bits=preshift,
        hash="murmurhash3_x86_128",
        minishard_bits=auto_minishard if minishard_bits is None else minishard_bits,
        shard_bits=auto_shard if shard_bits is None else shard_bits,
        minishard_index_encoding="gzip",
        data_encoding="raw",
    )


def sharding_json(spec) -> dict:
    """The spec as the `sharding` entry of an info file (plain ints, not numpy's)."""
    return {
        key: int(value) if key.endswith("_bits") else value for key, value in spec.to_dict().items()
    }


def shard_count(spec) -> int:
    return 2 ** int(spec.shard_bits)


def wanted_shards(spec, shards) -> set[str] | None:
    """The shard names (hex, as in `{shard}.shard`) of `shards` (hex strings); None: all."""
    if shards is None:
        return None
    total = shard_count(spec)
    width = int(np.ceil(int(spec.shard_bits) / 4.0))
    wanted = set()
    for shard in shards:
        try:
            number = int(str(shard), 16)
        except ValueError:
            raise ChunkflowError(f"shard {shard!r} is not a hex number") from None
        if not 0 <= number < total:
            raise ChunkflowError(
                f"shard {shard!r}: this sharding has {total} shard(s), 0 to {total - 1:x}"
            )
        wanted.add(format(number, "x").zfill(width))
    return wanted


def group_by_shard(spec, labels, wanted: set[str] | None) -> dict[str, list[int]]:
    """{shard: labels} for the labels that fall in a wanted shard."""
    groups: dict[str, list[int]] = {}
    for label in labels:
        shard = spec.compute_shard_location(label).shard_number
        if wanted is None or shard in wanted:
            groups.setdefault(shard, []).append(int(label))
    return groups

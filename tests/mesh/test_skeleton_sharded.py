"""skeleton-merge --sharded: shard files cloud-volume reads as a sharded skeleton source."""

import json
import os

import numpy as np
import pytest
from cloudvolume import CloudVolume

from tests.cli.test_skeleton import check_gala_skeletons


@pytest.fixture
def skeleton_fragments(run_cli, gala, tmp_path):
    """gala ground truth skeletonized in two tasks (one voxel of overlap), not merged."""
    run_cli(
        "create-info -v seg --volume-size 50 100 200 -d uint32 -t segmentation -s 10 10 10 "
        f"read-h5 -f {gala}/test-gt.lzf.h5 -e uint32 -x 10 10 10 -o seg save -i seg -v seg"
    )
    run_cli(
        "generate-tasks -v seg --chunk-size 26 100 200 --stride 25 100 200 --respect-stop "
        "cutout -v seg -o seg skeletonize -i seg -o seg"
    )
    return tmp_path / "seg"


def test_shard_jobs_write_skeletons_cloudvolume_reads(run_cli, gala, skeleton_fragments):
    for shard in ("0", "1"):
        result = run_cli(
            f"skeleton-merge -v seg --sharded --shard {shard} --shard-bits 1 --minishard-bits 1"
        )
        assert "of 2 shard(s)" in result.err
    folder = skeleton_fragments / "skeletons"
    assert sorted(n for n in os.listdir(folder) if n.endswith(".shard")) == ["0.shard", "1.shard"]
    assert not [n for n in os.listdir(folder) if n.isdigit()]  # no unsharded {id} files
    info = json.loads((folder / "info").read_text())
    assert info["@type"] == "neuroglancer_skeletons"
    assert info["sharding"]["@type"] == "neuroglancer_uint64_sharded_v1"
    assert (info["sharding"]["shard_bits"], info["sharding"]["minishard_bits"]) == (1, 1)
    vol = CloudVolume(f"file://{skeleton_fragments}")
    assert "Sharded" in type(vol.skeleton).__name__
    check_gala_skeletons(vol, gala)


def test_sharded_equals_unsharded(run_cli, skeleton_fragments):
    run_cli("skeleton-merge -v seg")
    vol = CloudVolume(f"file://{skeleton_fragments}")
    plain = {label: vol.skeleton.get(label) for label in (21, 9, 1, 14)}
    result = run_cli("skeleton-merge -v seg --sharded")
    assert "45 skeletons merged into 1 of 1 shard(s)" in result.err
    vol = CloudVolume(f"file://{skeleton_fragments}")
    for label, skeleton in plain.items():
        sharded = vol.skeleton.get(label)
        assert np.allclose(sharded.vertices, skeleton.vertices), label
        assert np.array_equal(sharded.edges, skeleton.edges), label


@pytest.mark.parametrize(
    "args, message",
    [
        ("--shard 0", "need --sharded"),
        ("--sharded --prefix 1", "with --sharded use --shard"),
        ("--sharded --shard 4", "1 shard(s)"),
        ("--sharded --shard zz", "not a hex number"),
    ],
)
def test_bad_options_are_refused(run_cli, skeleton_fragments, args, message):
    result = run_cli(f"skeleton-merge -v seg {args}", expect=None)
    assert result.code != 0 and message in result.err

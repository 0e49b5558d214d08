"""Sharded multi-resolution meshes (neuroglancer_multilod_draco) read back by cloud-volume."""

import json

import numpy as np
import pytest
import zmesh
from cloudvolume import CloudVolume

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.precomputed import write_precomputed
from chunkflow.mesh.multires import (
    decode_index,
    draco_fragment,
    encode_fragments,
    encode_multires,
    read_indices,
    read_meshes,
)
from tests.io.test_precomputed import fib25


def _bounds(labels, label, offset, voxel_size):
    """World (x, y, z) bounds of a label's voxels, one voxel of slack each side."""
    z, y, x = np.nonzero(labels == label)
    low = (np.array([x.min(), y.min(), z.min()]) + offset - 1) * voxel_size
    high = (np.array([x.max(), y.max(), z.max()]) + offset + 2) * voxel_size
    return low, high


def _get(vol, label, lod):
    mesh = vol.mesh.get(int(label), lod=lod)
    return mesh[int(label)] if isinstance(mesh, dict) else mesh


def mesh_gala_gt(run_cli, gala, path: str, mesh_options: str = "") -> None:
    """gala ground truth saved at `path` (10 nm voxels) and meshed as 8 tasks with one voxel of
    overlap, into multi-resolution fragments not yet merged."""
    run_cli(f"read-h5 -f {gala}/test-gt.lzf.h5 -e uint32 -x 10 10 10 save -v {path}")
    run_cli(
        f"generate-tasks -v {path} -c 26 51 101 --stride 25 50 100 --respect-stop "
        f"cutout -v {path} -o seg mesh -i seg -o {path} --format multires {mesh_options}"
    )


@pytest.fixture
def gala_multires(run_cli, gala, tmp_path):
    """gala ground truth meshed as 8 tasks (one voxel of overlap), merged into 2 shards."""
    path = f"file://{tmp_path}/seg"
    mesh_gala_gt(run_cli, gala, path, "-s 0")
    for shard in ("0", "1"):  # two shard jobs, as separate processes would run them
        run_cli(f"mesh-merge-sharded -v {path} --shard {shard} --shard-bits 1 --minishard-bits 2")
    gt = np.asarray(CloudVolume(path)[:, :, :])[..., 0].T  # z, y, x
    return path, gt


def test_fragment_file_round_trip():
    labels = np.zeros((12, 12, 12), np.uint32)
    labels[2:8, 2:9, 3:10] = 7
    labels[6:11, 1:5, 1:5] = 3
    mesher = zmesh.Mesher((1, 1, 1))
    mesher.mesh(labels)
    meshes = {label: mesher.get(label, normals=False) for label in mesher.ids()}
    data = encode_fragments(meshes)
    index = decode_index(data, "x.frags")
    assert sorted(index) == [3, 7]
    for label, (offset, length) in index.items():
        back = zmesh.Mesh.from_precomputed(data[offset : offset + length])
        assert np.array_equal(back.vertices, meshes[label].vertices)
        assert np.array_equal(back.faces, meshes[label].faces)
    with pytest.raises(ChunkflowError, match="truncated"):
        decode_index(data[:20], "x.frags")
    with pytest.raises(ChunkflowError, match="not a chunkflow mesh fragment file"):
        decode_index(b"garbage" * 4, "x.frags")


def test_a_shard_job_reads_only_what_it_needs(tmp_path):
    labels = np.zeros((20, 20, 20), np.uint32)
    labels[2:8, 2:9, 3:10], labels[10:18, 1:5, 1:5], labels[3:9, 12:18, 12:18] = 5, 6, 7
    mesher = zmesh.Mesher((1, 1, 1))
    mesher.mesh(labels)
    meshes = {label: mesher.get(label, normals=False) for label in mesher.ids()}
    (tmp_path / "0-20_0-20_0-20.frags").write_bytes(encode_fragments(meshes))
    (tmp_path / "other-file").write_bytes(b"not a fragment file, not read")
    indices = read_indices(f"file://{tmp_path}")
    assert list(indices) == ["0-20_0-20_0-20.frags"]
    ((name, index),) = indices.items()
    for wanted in ([6], [5, 6, 7]):  # one ranged read each, or the file whole
        got = read_meshes(f"file://{tmp_path}", name, index, wanted + [99])
        assert sorted(got) == wanted
        for label in wanted:
            assert np.array_equal(got[label].vertices, meshes[label].vertices)


def test_fragments_that_quantization_flattens_are_empty():
    import DracoPy

    faces = np.array([[0, 1, 2], [1, 2, 3]])
    same = np.array([[5, 5, 5], [5, 5, 5], [5, 5, 6], [5, 5, 6]], np.uint32)
    assert draco_fragment(same, faces, 16, 7) == b""  # every triangle has two equal corners
    line = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]], np.uint32)
    assert isinstance(draco_fragment(line, faces, 16, 7), bytes)  # collinear: no exception
    solid = np.array([[0, 0, 0], [9, 0, 0], [0, 9, 0], [0, 0, 9]], np.uint32)
    mixed = np.concatenate([solid, same])
    data = draco_fragment(mixed, np.array([[0, 1, 2], [0, 1, 3], [4, 5, 6]]), 16, 7)
    decoded = DracoPy.decode(data)
    assert len(decoded.faces) == 2  # the degenerate triangle is dropped, the others kept
    assert {tuple(v) for v in np.asarray(decoded.points)} <= {tuple(v) for v in mixed}


def test_flat_mesh_is_skipped():
    mesh = zmesh.Mesh(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]]), None
    )
    assert encode_multires(mesh, 1, 3, 4) is None


def test_info_has_the_spec_fields(gala_multires, tmp_path):
    path, _ = gala_multires
    info = json.loads((tmp_path / "seg" / "mesh" / "info").read_text())
    assert json.loads((tmp_path / "seg" / "info").read_text())["mesh"] == "mesh"
    assert info["@type"] == "neuroglancer_multilod_draco"
    assert info["vertex_quantization_bits"] in (10, 16)
    assert info["transform"] == [10.0, 0, 0, 0, 0, 10.0, 0, 0, 0, 0, 10.0, 0]
    assert isinstance(info["lod_scale_multiplier"], float)
    sharding = info["sharding"]
    assert sharding["@type"] == "neuroglancer_uint64_sharded_v1"
    assert sharding["hash"] in ("identity", "murmurhash3_x86_128")
    assert sharding["minishard_index_encoding"] in ("raw", "gzip")
    assert sharding["data_encoding"] in ("raw", "gzip")
    for key in ("preshift_bits", "minishard_bits", "shard_bits"):
        assert isinstance(sharding[key], int) and 0 <= sharding[key] <= 64
    assert (sharding["shard_bits"], sharding["minishard_bits"]) == (1, 2)
    names = sorted(p.name for p in (tmp_path / "seg" / "mesh").iterdir())
    assert [n for n in names if n.endswith(".shard")] == ["0.shard", "1.shard"]
    assert len([n for n in names if n.endswith(".frags")]) == 8


def test_every_lod_within_the_labels_bounds(gala_multires):
    path, gt = gala_multires
    vol = CloudVolume(path)
    assert type(vol.mesh).__name__ == "ShardedMultiLevelPrecomputedMeshSource"
    labels = [int(i) for i in np.unique(gt) if i != 0]
    counts = {label: int((gt == label).sum()) for label in labels}
    big = sorted(labels, key=counts.get, reverse=True)[:8]
    for label in big:
        manifest = vol.mesh.get_manifest(label)
        assert manifest.num_lods == 3, label
        low, high = _bounds(gt, label, 0, 10)
        faces = []
        for lod in range(manifest.num_lods):
            mesh = _get(vol, label, lod)
            assert len(mesh.faces) > 0, (label, lod)
            # coarser levels may move vertices by a few voxels, never outside the object's box
            slack = 0 if lod == 0 else 30
            assert np.all(mesh.vertices >= low - slack), (label, lod)
            assert np.all(mesh.vertices <= high + slack), (label, lod)
            faces.append(len(mesh.faces))
        assert faces == sorted(faces, reverse=True) and len(set(faces)) == len(faces), faces


def test_merged_mesh_covers_an_object_across_tasks(gala_multires):
    path, gt = gala_multires
    vol = CloudVolume(path)
    # objects present on both sides of the task planes z=25, y=50 and x=100
    spanning = (
        set(np.unique(gt[:25]))
        & set(np.unique(gt[25:]))
        & set(np.unique(gt[:, :50]))
        & set(np.unique(gt[:, 50:]))
        & set(np.unique(gt[:, :, :100]))
        & set(np.unique(gt[:, :, 100:]))
    ) - {0}
    assert spanning
    for label in sorted(spanning)[:4]:
        mesh = _get(vol, label, 0)
        z, y, x = np.nonzero(gt == label)
        voxels = np.stack([x, y, z], axis=1) * 10 + 5  # voxel centres, nm
        # every boundary voxel of the object lies close to the merged surface: no task is
        # missing (surfaces stay open at the volume's faces, so voxels there do not count)
        inside = gt == label
        padded = np.pad(inside, 1, constant_values=True)
        interior = inside.copy()
        for axis in range(3):
            for shift in (1, -1):
                interior &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
        surface = np.stack(np.nonzero(inside & ~interior)[::-1], axis=1) * 10 + 5
        from scipy.spatial import cKDTree

        distance, _ = cKDTree(mesh.vertices).query(surface)
        assert distance.max() <= 20, (label, distance.max())
        lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
        assert np.all(lo <= voxels.min(axis=0) + 1) and np.all(hi >= voxels.max(axis=0) - 1)


def test_shards_split_the_objects(gala_multires):
    path, gt = gala_multires
    vol = CloudVolume(path)
    labels = [int(i) for i in np.unique(gt) if i != 0]
    shards = {vol.mesh.reader.spec.compute_shard_location(label).shard_number for label in labels}
    assert shards == {"0", "1"}
    assert all(vol.mesh.get_manifest(label) is not None for label in labels)


def test_one_task_fib25(run_cli, tmp_path):
    chunk = Chunk(fib25(), (3000, 3000, 3000), (8, 8, 8), "segmentation")
    path = f"file://{tmp_path}/seg"
    write_precomputed(chunk, path, encoding="compressed_segmentation")
    run_cli(
        f"create-bbox -b 3000-3064_3000-3064_3000-3064 cutout -v {path} -o seg "
        f"mesh -i seg -o {path} -t multires mesh-merge-sharded -v {path} --num-lods 2"
    )
    vol = CloudVolume(path)
    for label in np.unique(chunk.array):
        low, high = _bounds(chunk.array, label, 3000, 8)
        mesh = _get(vol, label, 0)
        assert np.all(mesh.vertices >= low) and np.all(mesh.vertices <= high), label


def test_errors_name_the_problem(run_cli, gala, tmp_path):
    path = f"file://{tmp_path}/seg"
    run_cli(f"read-h5 -f {gala}/test-gt.lzf.h5 -e uint32 -x 10 10 10 save -v {path}")
    result = run_cli(f"mesh-merge-sharded -v {path}", expect=None)
    assert result.code != 0 and "no fragment files" in result.err
    run_cli(f"cutout -v {path} --start 0 0 0 --size 20 40 40 mesh -o {path} --format multires")
    result = run_cli(f"mesh-merge-sharded -v {path} --shard 5", expect=None)
    assert result.code != 0 and "1 shard(s)" in result.err
    (frags,) = (tmp_path / "seg" / "mesh").glob("*.frags")
    frags.write_bytes(frags.read_bytes()[:-10])  # the last label's mesh loses its end
    result = run_cli(f"mesh-merge-sharded -v {path}", expect=None)
    assert result.code != 0 and f"{frags.name} is truncated or unreadable" in result.err
    folder = f"file://{tmp_path}/folder"
    result = run_cli(
        f"create-chunk --size 8 8 8 --dtype uint32 mesh -o {folder} -v 1 1 1 --format multires",
        expect=None,
    )
    assert result.code != 0 and "precomputed segmentation volume" in result.err

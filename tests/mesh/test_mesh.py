"""Meshes of real ground truth, read back by cloud-volume and trimesh."""

import json

import numpy as np
import pytest
import trimesh
from cloudvolume import CloudVolume

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.io.precomputed import create_info, write_precomputed
from chunkflow.mesh.mesh import MeshTarget, mesh_chunk, world_bbox
from tests.io.test_precomputed import fib25


@pytest.fixture(scope="module")
def fib25_chunk():
    return Chunk(fib25(), (3000, 3000, 3000), (8, 8, 8), "segmentation")


def test_every_object_is_meshed_in_world_units(fib25_chunk):
    meshes = mesh_chunk(fib25_chunk, (8, 8, 8), simplification_factor=0)
    labels = fib25_chunk.array
    assert sorted(meshes) == sorted(int(i) for i in np.unique(labels))
    for label, mesh in meshes.items():
        z, y, x = np.nonzero(labels == label)
        low = (np.array([x.min(), y.min(), z.min()]) + 3000) * 8
        high = (np.array([x.max(), y.max(), z.max()]) + 3001) * 8
        assert np.all(mesh.vertices >= low - 8) and np.all(mesh.vertices <= high + 8), label


def test_slabs_join_into_the_same_surface(fib25_chunk):
    whole = mesh_chunk(fib25_chunk, (8, 8, 8), simplification_factor=0)
    slabs = mesh_chunk(
        fib25_chunk, (8, 8, 8), simplification_factor=0, max_slab_voxels=64 * 64 * 10
    )  # 10-plane slabs
    assert sorted(slabs) == sorted(whole)
    for label, mesh in whole.items():
        joined = slabs[label]
        rounded = lambda v: {tuple(x) for x in np.round(v, 3)}  # noqa: E731
        assert rounded(joined.vertices) == rounded(mesh.vertices), label
        assert len(joined.faces) == len(mesh.faces), label


def test_forked_simplification_matches_serial(fib25_chunk):
    serial = mesh_chunk(fib25_chunk, (8, 8, 8), processes=1)
    forked = mesh_chunk(fib25_chunk, (8, 8, 8), processes=2)
    assert sorted(forked) == sorted(serial)
    # without simplification both are exact; with it zmesh's simplifier depends on call order
    faces = [sum(len(m.faces) for m in meshes.values()) for meshes in (serial, forked)]
    assert abs(faces[0] - faces[1]) < 0.2 * faces[0]
    for label, mesh in forked.items():
        low, high = serial[label].vertices.min(axis=0), serial[label].vertices.max(axis=0)
        assert np.all(mesh.vertices >= low - 16) and np.all(mesh.vertices <= high + 16)


def test_anisotropic_voxels_and_simplification(fib25_chunk):
    full = mesh_chunk(fib25_chunk, (40, 4, 4), simplification_factor=0)
    simple = mesh_chunk(
        fib25_chunk, (40, 4, 4), simplification_factor=100, max_simplification_error=40
    )
    label = max(full, key=lambda k: len(full[k].faces))
    assert len(simple[label].faces) < len(full[label].faces) / 4
    extent = full[label].vertices.max(axis=0) - full[label].vertices.min(axis=0)
    assert extent[2] > 40  # z is in units of 40 nm


def test_selection_and_dust(fib25_chunk):
    labels, counts = np.unique(fib25_chunk.array, return_counts=True)
    some = [int(labels[0]), int(labels[1])]
    assert sorted(mesh_chunk(fib25_chunk, (8, 8, 8), ids=some)) == sorted(some)
    assert some[0] not in mesh_chunk(fib25_chunk, (8, 8, 8), skip_ids=[some[0]])
    big = {int(i) for i, c in zip(labels, counts) if c >= 1000}
    assert set(mesh_chunk(fib25_chunk, (8, 8, 8), dust_threshold=1000)) == big
    with pytest.raises(ChunkflowError, match="`ids` 1 are not in the chunk"):
        mesh_chunk(fib25_chunk, (8, 8, 8), ids=[1])


def test_rejects_non_segmentation():
    with pytest.raises(ChunkflowError, match="integer segmentation"):
        mesh_chunk(Chunk(np.zeros((4, 4, 4), np.float32)), (1, 1, 1))
    with pytest.raises(ChunkflowError, match="integer segmentation"):
        mesh_chunk(Chunk(np.zeros((4, 4, 4), np.uint8)), (1, 1, 1))  # an image by default


def test_target_checks_the_voxel_size_of_chunks(tmp_path):
    path = f"file://{tmp_path}/seg"
    create_info(path, (4, 4, 4), voxel_size=(40, 4, 4), layer_type="segmentation")
    target = MeshTarget(path, "precomputed", 0)
    same, unset = (
        Chunk(np.ones((4, 4, 4), np.uint32), voxel_size=(40, 4, 4)),
        Chunk(np.ones((4, 4, 4), np.uint32)),
    )
    assert target.check_chunk(same) is same and target.check_chunk(unset) is unset
    other = Chunk(np.ones((4, 4, 4), np.uint32), voxel_size=(8, 8, 8))
    with pytest.raises(
        ChunkflowError, match=f"'seg' .* the volume {path} at mip 0 .* have different"
    ):
        target.check_chunk(other, "seg")
    assert MeshTarget(path, "precomputed", 0, (8, 8, 8)).check_chunk(other) is other


def test_world_bbox():
    chunk = Chunk(np.zeros((2, 3, 4), np.uint32), (1, 2, 3))
    assert world_bbox(chunk, (40, 4, 4)).string == "40-120_8-20_12-28"


class TestCli:
    def test_fib25_volume_read_back_by_cloudvolume(self, run_cli, fib25_chunk, tmp_path):
        path = f"file://{tmp_path}/seg"
        write_precomputed(fib25_chunk, path, encoding="compressed_segmentation")
        run_cli(
            f"create-bbox -b 3000-3064_3000-3064_3000-3064 cutout -v {path} -o seg "
            f"mesh -i seg -o {path} mesh-manifest -v {path}"
        )
        info = json.loads((tmp_path / "seg" / "info").read_text())
        assert info["mesh"] == "mesh"
        assert json.loads((tmp_path / "seg" / "mesh" / "info").read_text()) == {
            "@type": "neuroglancer_legacy_mesh"
        }
        vol = CloudVolume(path)
        labels = fib25_chunk.array
        for label in np.unique(labels):
            mesh = vol.mesh.get(int(label))
            mesh = mesh[int(label)] if isinstance(mesh, dict) else mesh
            z, y, x = np.nonzero(labels == label)
            low = (np.array([x.min(), y.min(), z.min()]) + 3000) * 8 - 8
            high = (np.array([x.max(), y.max(), z.max()]) + 3001) * 8 + 8
            assert len(mesh.faces) > 0
            assert np.all(mesh.vertices >= low) and np.all(mesh.vertices <= high)

    def test_adjacent_chunks_merge_into_one_mesh(self, run_cli, gala, tmp_path):
        path = f"file://{tmp_path}/seg"
        run_cli(f"read-h5 -f {gala}/test-gt.lzf.h5 -e uint32 -x 10 10 10 save -v {path}")
        # two chunks along x with one voxel of overlap: stride = chunk size - 1
        run_cli(
            f"generate-tasks -v {path} -c 50 100 101 --stride 50 100 100 --respect-stop "
            f"cutout -v {path} -o seg mesh -i seg -o {path} mesh-manifest -v {path}"
        )
        gt = np.asarray(CloudVolume(path)[:, :, :])[..., 0].T
        crossing = sorted(set(np.unique(gt[:, :, 99])) & set(np.unique(gt[:, :, 100])) - {0})
        assert crossing
        vol = CloudVolume(path)
        for label in crossing[:5]:
            manifest = json.loads((tmp_path / "seg" / "mesh" / f"{label}:0").read_text())
            assert len(manifest["fragments"]) == 2
            mesh = vol.mesh.get(label)
            mesh = mesh[label] if isinstance(mesh, dict) else mesh
            assert mesh.vertices[:, 0].min() < 1000 < mesh.vertices[:, 0].max()

    def test_ply_and_obj_match_precomputed(self, run_cli, tmp_path):
        from chunkflow.io.h5 import write_h5

        write_h5(
            Chunk(fib25()[:32, :32, :32], (0, 0, 0), (8, 8, 8), "segmentation"),
            str(tmp_path / "seg.h5"),
        )
        for fmt in ("precomputed", "ply", "obj"):
            run_cli(
                f"read-h5 -f seg.h5 -o seg mesh -i seg -o out-{fmt} -t {fmt} "
                "--voxel-size 8 8 8 -s 0"
            )
        precomputed = {p.name.split(":")[0]: p for p in (tmp_path / "out-precomputed").iterdir()}
        from zmesh import Mesh

        for fmt in ("ply", "obj"):
            files = sorted((tmp_path / f"out-{fmt}").iterdir())
            assert len(files) == len(precomputed)
            for path in files:
                loaded = trimesh.load(path, process=False)
                reference = Mesh.from_precomputed(precomputed[path.name.split("_")[0]].read_bytes())
                assert len(loaded.vertices) == len(reference.vertices)
                assert len(loaded.faces) == len(reference.faces)

    def test_manifest_prefixes(self, run_cli, tmp_path):
        seg = np.zeros((4, 12, 12), np.uint32)
        for k, label in enumerate([1, 12, 7, 70]):
            seg[1:3, 1 + 3 * k : 3 + 3 * k, 1:10] = label
        write_precomputed(Chunk(seg, (0, 0, 0), (4, 4, 4)), f"file://{tmp_path}/seg")
        run_cli("create-bbox -b 0-4_0-12_0-12 cutout -v seg -o seg mesh -i seg -o seg")
        mesh_dir = tmp_path / "seg" / "mesh"
        run_cli("mesh-manifest -v seg --prefix 0 --digits 1")
        assert not [p for p in mesh_dir.iterdir() if p.name.endswith(":0")]
        run_cli("mesh-manifest -v seg --prefix 7 --digits 1")
        assert sorted(p.name for p in mesh_dir.iterdir() if p.name.endswith(":0")) == [
            "70:0",
            "7:0",
        ]
        run_cli("mesh-manifest -v seg")
        assert len([p for p in mesh_dir.iterdir() if p.name.endswith(":0")]) == 4

    def test_whole_objects_with_manifest_flag(self, run_cli, fib25_chunk, tmp_path):
        from chunkflow.io.h5 import write_h5

        write_h5(fib25_chunk, str(tmp_path / "seg.h5"))
        run_cli(
            "create-info -v seg -t segmentation -d uint64 -z 64 64 64 -s 8 8 8 "
            "-o 3000 3000 3000 read-h5 -f seg.h5 -o seg mesh -i seg -o seg --manifest"
        )
        label = int(fib25_chunk.array[0, 0, 0])
        mesh = CloudVolume(f"file://{tmp_path}/seg").mesh.get(label)
        assert len((mesh[label] if isinstance(mesh, dict) else mesh).faces) > 0

    @pytest.mark.parametrize(
        "args, message",
        [
            (
                "create-chunk -t float32 -o seg mesh -i seg -o out --voxel-size 1 1 1",
                "needs a 3D integer segmentation",
            ),
            ("create-chunk -t uint32 -o seg mesh -i seg -o out", "is a folder, not a volume"),
            ("create-chunk -t uint32 -o seg mesh -i seg -o img", "is a image volume"),
            ("mesh-manifest -v img", "not a segmentation"),
            (
                "create-chunk -t uint32 -o seg mesh -i seg -o file:///proc/chunkflow-x -v 1 1 1",
                "is not writable",
            ),
            (
                "create-chunk -t uint32 -s 2 2 2 -o seg mesh -i seg -o out -v 1 1 1 --ids 5",
                "are not in the chunk",
            ),
            ("mesh-manifest -v seg2 -p 7x", "--prefix '7x'"),
        ],
    )
    def test_bad_input(self, run_cli, tmp_path, args, message):
        from tests.conftest import error_line

        run_cli("create-chunk -s 4 8 8 save -v img")
        result = run_cli(args, expect=None)
        assert result.code != 0
        assert message in error_line(result)
        assert not any(p.name.endswith(":0") for p in tmp_path.rglob("*"))


def test_no_fork_while_other_threads_run(fib25_chunk, monkeypatch):
    """A fork copies the locks other threads hold (a lease heartbeat, I/O pools): with other
    threads alive the simplification runs in this process instead."""
    import multiprocessing
    import threading

    forks = []
    real = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda m=None: forks.append(m) or real(m))
    stop = threading.Event()
    beat = threading.Thread(target=stop.wait, daemon=True)
    beat.start()
    try:
        meshes = mesh_chunk(fib25_chunk, (8, 8, 8), processes=2)
    finally:
        stop.set()
        beat.join()
    assert forks == [] and len(meshes) >= 32
    if threading.active_count() == 1:  # alone again: the forked path is taken
        mesh_chunk(fib25_chunk, (8, 8, 8), processes=2)
        assert forks == ["fork"]


def test_an_idle_tqdm_monitor_does_not_keep_simplification_serial(fib25_chunk, monkeypatch):
    """tqdm starts a monitor thread with any bar, even a disabled one (cloudfiles makes those on
    every read): it is stopped, and the simplification forks."""
    import multiprocessing
    import threading

    from tqdm import tqdm

    forks = []
    real = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda m=None: forks.append(m) or real(m))
    monkeypatch.setattr(tqdm, "monitor_interval", 10)
    with tqdm(total=1, disable=True):
        pass
    monitors = [t for t in threading.enumerate() if type(t).__name__ == "TMonitor"]
    assert monitors and all(t.is_alive() for t in monitors)
    others = [t for t in threading.enumerate() if t not in monitors]
    meshes = mesh_chunk(fib25_chunk, (8, 8, 8), processes=2)
    assert len(meshes) >= 32 and not any(t.is_alive() for t in monitors)
    if others == [threading.main_thread()]:  # nothing else alive: the forked path is taken
        assert forks == ["fork"]

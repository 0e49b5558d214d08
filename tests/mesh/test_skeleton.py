"""Skeletons (kimimaro): world coordinates, object selection, fragments, merging, read-back."""

import os

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import create_info, write_precomputed
from chunkflow.mesh.skeleton import (
    SkeletonVolume,
    choose_voxel_size,
    fragment_name,
    merge_skeletons,
    skeletonize,
    skeletonize_for,
)
from tests.conftest import GALA, read_stack


def rods() -> np.ndarray:
    """Three boxes elongated along x: id 1 (4x6x50 voxels), 2 (4x4x10), 3 (4x6x30)."""
    seg = np.zeros((8, 24, 60), np.uint32)
    seg[2:6, 2:8, 5:55] = 1
    seg[2:6, 11:15, 5:15] = 2
    seg[2:6, 17:23, 20:50] = 3
    return seg


def test_vertices_are_world_xyz_with_anisotropy():
    chunk = Chunk(rods(), voxel_offset=(10, 20, 30), voxel_size=(40, 4, 4))
    vertices = skeletonize(chunk, dust_threshold=0, ids=[1])[1].vertices
    x, y, z = vertices.T
    # world = (voxel + offset) * voxel size; the rod covers x 35..84, y 22..27, z 12..15
    assert x.min() >= 35 * 4 and x.max() <= 84 * 4
    assert x.max() - x.min() >= 0.8 * 49 * 4  # runs along the rod
    assert y.min() >= 22 * 4 and y.max() <= 27 * 4
    assert z.min() >= 12 * 40 and z.max() <= 15 * 40
    np.testing.assert_allclose(z % 40, 0)  # z steps are 40, not 4: anisotropy is per axis
    # an explicit voxel size overrides the chunk's and gives the same vertices
    plain = Chunk(rods(), voxel_offset=(10, 20, 30))
    again = skeletonize(plain, voxel_size=(40, 4, 4), dust_threshold=0, ids=[1])[1]
    np.testing.assert_allclose(again.vertices, vertices)
    isotropic = skeletonize(plain, dust_threshold=0, ids=[1])[1].vertices
    assert isotropic[:, 0].max() == pytest.approx(x.max() / 4, abs=1)


def test_ids_and_dust_threshold_select_objects():
    chunk = Chunk(rods(), voxel_size=(10, 10, 10))
    assert set(skeletonize(chunk, dust_threshold=0)) == {1, 2, 3}
    assert set(skeletonize(chunk, dust_threshold=500)) == {1, 3}  # 2 has 160 voxels, 3 has 720
    assert set(skeletonize(chunk, dust_threshold=1000)) == {1}
    only = skeletonize(chunk, dust_threshold=0, ids=[3, 2])
    assert set(only) == {2, 3} and all(only[i].id == i for i in only)
    with pytest.raises(ChunkflowError, match=r"`ids` 7,99: not in the chunk"):
        skeletonize(chunk, ids=[2, 7, 99])


def test_real_objects_by_id():
    gt = read_stack(GALA / "test-gt.lzf.h5")
    skeletons = skeletonize(Chunk(gt, voxel_size=(10, 10, 10)), ids=[21, 9])
    assert set(skeletons) == {21, 9}
    for label, skeleton in skeletons.items():
        zz, yy, xx = np.nonzero(gt == label)
        low = np.array([xx.min(), yy.min(), zz.min()]) * 10 - 10
        high = np.array([xx.max(), yy.max(), zz.max()]) * 10 + 10
        assert len(skeleton.vertices) > 50 and len(skeleton.components()) == 1
        assert (skeleton.vertices >= low).all() and (skeleton.vertices <= high).all()


@pytest.mark.parametrize(
    "chunk, what",
    [
        (Chunk(np.zeros((4, 8, 8), np.float32), layer_type="segmentation"), "float32"),
        (Chunk(np.zeros((4, 8, 8), np.uint8)), "uint8, shape .* layer type image"),
        (Chunk(np.zeros((2, 4, 8, 8), np.uint32)), r"shape \(2, 4, 8, 8\)"),
    ],
)
def test_non_segmentation_chunks_are_refused(chunk, what):
    with pytest.raises(ChunkflowError, match=f"integer segmentation.*{what}"):
        skeletonize(chunk)


def test_voxel_size_choice():
    default, own = Chunk(rods()), Chunk(rods(), voxel_size=(40, 4, 4))
    assert choose_voxel_size(default, None, (10, 10, 10)) == (10, 10, 10)
    with pytest.raises(ChunkflowError, match="chunk 'seg' .* have different voxel sizes"):
        choose_voxel_size(own, None, (10, 10, 10), "seg")
    assert choose_voxel_size(own, None, (40, 4, 4)) == (40, 4, 4)
    assert choose_voxel_size(own, (8, 8, 8), (10, 10, 10)) == (8, 8, 8)
    assert choose_voxel_size(default, None, None) == (1, 1, 1)


def test_volume_must_be_a_segmentation(tmp_path):
    with pytest.raises(ChunkflowError, match="no segmentation info there"):
        SkeletonVolume(f"file://{tmp_path}/missing")
    create_info(f"file://{tmp_path}/img", (8, 8, 8))
    with pytest.raises(ChunkflowError, match="is an image volume; skeletons need a segmentation"):
        SkeletonVolume(f"file://{tmp_path}/img")


def test_two_chunks_merge_into_whole_skeletons(tmp_path):
    from cloudvolume import CloudVolume

    gt = read_stack(GALA / "test-gt.lzf.h5").astype(np.uint32)
    path = f"file://{tmp_path}/seg"
    create_info(path, gt.shape, (10, 10, 10), dtype="uint32", layer_type="segmentation")
    write_precomputed(Chunk(gt, voxel_size=(10, 10, 10)), path)
    volume = SkeletonVolume(path)
    assert volume.voxel_size == (10, 10, 10)
    halves = [BoundingBox((0, 0, 0), (26, 100, 200)), BoundingBox((25, 0, 0), (50, 100, 200))]
    for bbox in halves:  # one voxel of overlap, as generate-tasks --stride 25 gives
        seg = Chunk(gt, voxel_size=(10, 10, 10)).crop(bbox)
        volume.write_fragments(skeletonize(seg), bbox)
    names = os.listdir(tmp_path / "seg" / "skeletons")
    assert {"info", "21:0-26_0-100_0-200", "21:25-50_0-100_0-200"} <= set(names)
    assert fragment_name(21, halves[1]) == "21:25-50_0-100_0-200"

    assert merge_skeletons(path) == {"merged": 45, "dropped": 0}
    assert not [n for n in os.listdir(tmp_path / "seg" / "skeletons") if n.startswith(".")]
    vol = CloudVolume(path)
    for label in (21, 9, 1, 14, 49, 10):
        skeleton = vol.skeleton.get(label)
        zz, yy, xx = np.nonzero(gt == label)
        low = np.array([xx.min(), yy.min(), zz.min()]) * 10 - 10
        high = np.array([xx.max(), yy.max(), zz.max()]) * 10 + 10
        assert (skeleton.vertices >= low).all() and (skeleton.vertices <= high).all(), label
        # every one of these objects is cut by the chunk border at z = 25
        z = skeleton.vertices[:, 2]
        assert z.min() < 240 and z.max() > 260, label
        assert len(skeleton.components()) == 1, label
        assert skeleton.radius.min() > 0 and len(skeleton.edges) >= len(skeleton.vertices) - 1


def test_merge_by_prefix_and_dust(tmp_path):
    from cloudvolume import CloudVolume

    seg = rods()
    seg[seg == 3] = 12
    path = f"file://{tmp_path}/seg"
    create_info(path, seg.shape, (10, 10, 10), dtype="uint32", layer_type="segmentation")
    volume = SkeletonVolume(path)
    left, right = BoundingBox((0, 0, 0), (8, 24, 31)), BoundingBox((0, 0, 30), (8, 24, 60))
    for bbox in (left, right):
        chunk = Chunk(seg, voxel_size=(10, 10, 10)).crop(bbox)
        volume.write_fragments(skeletonize(chunk, dust_threshold=0), bbox)
    skeletons = tmp_path / "seg" / "skeletons"

    assert merge_skeletons(path, prefix="0") == {"merged": 0, "dropped": 0}  # not "all"
    assert merge_skeletons(path, prefix="1") == {"merged": 2, "dropped": 0}
    assert {"1", "12"} <= set(os.listdir(skeletons)) and "2" not in os.listdir(skeletons)
    whole = CloudVolume(path).skeleton.get(1)
    assert whole.vertices[:, 0].min() < 300 < whole.vertices[:, 0].max()
    assert len(whole.components()) == 1

    # cable lengths: rod 2 ~110, rod 12 ~320, rod 1 ~520
    assert merge_skeletons(path, dust_threshold=400) == {"merged": 1, "dropped": 2}
    assert {"1", "12", "2"} & set(os.listdir(skeletons)) == {"1"}
    with pytest.raises(ChunkflowError, match="`prefix` 'a1': expected decimal digits"):
        merge_skeletons(path, prefix="a1")


def test_merge_needs_skeletons(tmp_path):
    path = f"file://{tmp_path}/seg"
    create_info(path, (8, 8, 8), dtype="uint32", layer_type="segmentation")
    with pytest.raises(ChunkflowError, match="names no skeletons"):
        merge_skeletons(path)


def test_skeletonize_for_a_volume_takes_its_voxel_size(tmp_path):
    path = f"file://{tmp_path}/seg"
    create_info(path, (8, 24, 60), voxel_size=(40, 4, 4), layer_type="segmentation")
    volume = SkeletonVolume(path)
    skeletons = skeletonize_for(Chunk(rods()), volume, dust_threshold=0, ids=[2])
    assert list(skeletons) == [2]
    assert skeletons[2].vertices[:, 2].min() >= 2 * 40  # z in the volume's units, not 1
    with pytest.raises(ChunkflowError, match="'seg' .* have different voxel sizes"):
        skeletonize_for(Chunk(rods(), voxel_size=(8, 8, 8)), volume, name="seg")
    alone = skeletonize_for(Chunk(rods()), None, (2, 2, 2), dust_threshold=0, ids=[2])
    assert alone[2].vertices[:, 2].max() <= 6 * 2

"""Whole-volume segmentation in chunks, checked against the same segmentation of the whole volume
in one piece: cc3d for cc mode, waterz for agglomerate mode, on real data."""

import cc3d
import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.errors import ChunkflowError
from chunkflow.geometry import BoundingBox
from chunkflow.io.precomputed import read_precomputed, write_precomputed
from chunkflow.segmentation import blockwise
from chunkflow.segmentation.agglomerate import agglomerate
from chunkflow.segmentation.evaluate import evaluate_segmentation
from chunkflow.training.targets import add_affinities
from tests.conftest import GALA, read_stack


def volume(tmp_path, name, array, layer_type, block=(32, 32, 32)):
    path = f"file://{tmp_path / name}"
    write_precomputed(Chunk(array, (0, 0, 0), (40, 8, 8), layer_type), path, block_size=block)
    return path


def run_job(plan, order=None):
    """Every phase over every task (in `order`, a list of task indices), in this process."""
    tasks = [bbox for _, bbox in plan.tasks()]
    order = range(len(tasks)) if order is None else order
    for phase in (blockwise.make_fragments, blockwise.find_edges):
        for i in order:
            phase(plan, tasks[i])
    blockwise.merge(plan)
    for i in order:
        blockwise.relabel(plan, tasks[i])
    return np.asarray(read_precomputed(plan.output_path, plan.roi))


def same_partition(a, b) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(a)) == len(np.unique(b)) == pairs.shape[1]


def assert_compact_ids(seg):
    ids = np.unique(seg)
    assert ids[0] == 0 and ids.tolist() == list(range(len(ids)))


@pytest.fixture(scope="module")
def pinky_crop(pinky40_labels):
    return np.ascontiguousarray(pinky40_labels[256:384, 256:384, 256:384])


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_cc_on_a_real_label_volume_is_cc3d_of_the_whole(tmp_path, pinky_crop, connectivity):
    source = volume(tmp_path, "labels", pinky_crop, "segmentation")
    # 5 x 3 x 3 chunks, the last ones along each axis cut short by the volume's end
    plan = blockwise.setup(
        "cc", source, f"file://{tmp_path}/seg", (30, 50, 45), connectivity=connectivity
    )
    assert plan.num_tasks == 45
    seg = run_job(plan)
    whole = cc3d.connected_components(pinky_crop, connectivity=connectivity)
    assert same_partition(seg, whole) and int(whole.max()) > 200
    assert_compact_ids(seg)


def test_cc_of_a_thresholded_probability_map(tmp_path):
    cells = 1 - read_stack(GALA / "test-p1.lzf.h5").astype(np.float32)
    source = volume(tmp_path, "prob", cells, "probability_map")
    plan = blockwise.setup(
        "cc", source, f"file://{tmp_path}/seg", (20, 40, 64), threshold=0.5, connectivity=26
    )
    seg = run_job(plan)
    whole = cc3d.connected_components(cells > 0.5, connectivity=26)
    assert same_partition(seg, whole) and int(whole.max()) > 50


def test_ids_depend_on_the_data_and_grid_only(tmp_path, pinky_crop):
    """Tasks in another order, some run twice: the output is the same to the id."""
    source = volume(tmp_path, "labels", pinky_crop[:64], "segmentation")
    first = run_job(blockwise.setup("cc", source, f"file://{tmp_path}/a", (32, 64, 64)))
    plan = blockwise.setup("cc", source, f"file://{tmp_path}/b", (32, 64, 64))
    order = list(np.random.default_rng(0).permutation(plan.num_tasks)) + [0, 3]
    np.testing.assert_array_equal(run_job(plan, order), first)


def test_agglomerate_ideal_affinities_give_exactly_the_whole_volume_result(tmp_path):
    gt = read_stack(GALA / "train-gt.lzf.h5").astype(np.uint32)
    affs, _ = add_affinities(Chunk(gt))
    source = volume(tmp_path, "affs", np.asarray(affs), "affinity_map", block=(25, 50, 50))
    plan = blockwise.setup("agglomerate", source, f"file://{tmp_path}/seg", (16, 40, 64))
    assert plan.num_tasks == 4 * 3 * 4
    seg = run_job(plan)
    whole = np.asarray(agglomerate(affs, 0.7))
    assert same_partition(seg, whole) and len(np.unique(whole)) > 50
    assert_compact_ids(seg)


@pytest.fixture(scope="module")
def unet_affinities(tmp_path_factory):
    """The bundled U-Net's affinities of the gala test volume, as a precomputed volume."""
    from chunkflow.cli.main import main

    folder = tmp_path_factory.mktemp("unet")
    unet = GALA.parent.parent / "examples" / "inference"
    code = main(
        [
            "-q",
            "read-h5",
            "-f",
            str(GALA / "test-image.h5"),
            "--voxel-size",
            "10",
            "10",
            "10",
            "-o",
            "image",
            "inference",
            "-i",
            "image",
            "-o",
            "affs",
            "--framework",
            "pytorch",
            "--convnet-model",
            str(unet / "unet.py"),
            "--convnet-weight-path",
            str(unet / "unet.pt"),
            "--input-patch-size",
            "16",
            "64",
            "64",
            "--output-patch-overlap",
            "4",
            "16",
            "16",
            "--num-output-channels",
            "3",
            "--batch-size",
            "4",
            "--mask-output-chunk",
            "save",
            "-i",
            "affs",
            "-v",
            f"file://{folder}/affs",
            "--block-size",
            "25",
            "50",
            "50",
        ]  # fmt: skip
    )
    assert code == 0
    return f"file://{folder}/affs"


def test_agglomerate_predicted_affinities_give_the_whole_volume_result(tmp_path, unet_affinities):
    """8 chunks against the whole volume in one piece, both at threshold 0.7: with the default
    context the chunks' watersheds agree on every basin cut by a face, and the result is the
    whole volume's; with one voxel of context, VOI against the ground truth stays within 0.02."""
    gt = read_stack(GALA / "test-gt.lzf.h5")
    options = dict(threshold=0.7, aff_threshold_low=0.001)
    affs = read_precomputed(unet_affinities, BoundingBox((0, 0, 0), gt.shape))
    whole = np.asarray(agglomerate(affs, 0.7, 0.001))
    reference = evaluate_segmentation(whole, gt)
    expected = reference["voi_split"] + reference["voi_merge"]
    for name, chunk, margin in (
        ("one", gt.shape, None),
        ("eight", (25, 50, 100), None),
        ("thin", (25, 50, 100), (1, 1, 1)),
    ):
        plan = blockwise.setup(
            "agglomerate",
            unet_affinities,
            f"file://{tmp_path}/{name}",
            chunk,
            margin=margin,
            **options,
        )
        seg = run_job(plan)
        metrics = evaluate_segmentation(seg, gt)
        total = metrics["voi_split"] + metrics["voi_merge"]
        print(f"VOI split + merge, {name}: {total:.4f}, whole volume {expected:.4f}")
        if margin is None:
            assert same_partition(seg, whole)
        assert abs(total - expected) <= 0.02 and expected < 0.6


def test_pieces_of_a_basin_cut_by_a_face_are_joined_when_both_sides_agree():
    # the upper chunk saw its fragment 5 on the lower chunk's voxels of fragment 9 (and one of
    # 8); the lower chunk saw its 9 on the upper chunk's 5: one basin. 6 and 7 disagree.
    shell_up = np.array([[5, 5, 5, 6]], np.uint64)
    rim_down = np.array([[9, 9, 8, 7]], np.uint64)
    shell_down = np.array([[9, 9, 7, 0]], np.uint64)
    rim_up = np.array([[5, 5, 5, 6]], np.uint64)
    assert blockwise.same_basins(shell_up, rim_down, shell_down, rim_up) == {(5, 9)}
    empty = np.zeros((0, 0), np.uint64)
    assert blockwise.same_basins(empty, rim_down, empty, rim_up) == set()


def test_phases_say_what_is_missing(tmp_path, pinky_crop):
    source = volume(tmp_path, "labels", pinky_crop[:64, :64, :64], "segmentation")
    plan = blockwise.setup("cc", source, f"file://{tmp_path}/seg", (32, 32, 32))
    tasks = [bbox for _, bbox in plan.tasks()]
    blockwise.make_fragments(plan, tasks[0])
    with pytest.raises(ChunkflowError, match=r"segment-fragments has not finished for 1 task"):
        blockwise.find_edges(plan, tasks[1])  # its lower neighbour 0 is done, it is not
    with pytest.raises(ChunkflowError, match=r"segment-edges has not finished for 8 task\(s\)"):
        blockwise.merge(plan)
    with pytest.raises(ChunkflowError, match="run segment-merge first"):
        blockwise.relabel(plan, tasks[0])
    with pytest.raises(ChunkflowError, match="is not a chunk of the job's grid"):
        blockwise.make_fragments(plan, BoundingBox((0, 0, 16), (32, 32, 48)))
    assert blockwise.status(plan) == {
        "fragments": 1, "edges": 0, "relabel": 0, "merge": None, "tasks": 8
    }  # fmt: skip


def test_setup_refuses_what_it_cannot_do(tmp_path, pinky_crop):
    labels = volume(tmp_path, "labels", pinky_crop[:32], "segmentation")
    out = f"file://{tmp_path}/seg"
    with pytest.raises(ChunkflowError, match="1 channel.*needs an affinity map of 3"):
        blockwise.setup("agglomerate", labels, out, (32, 32, 32))
    with pytest.raises(ChunkflowError, match=r"block size \(32, 32, 20\) does not divide"):
        blockwise.setup("cc", labels, out, (32, 32, 32), block_size=(32, 32, 20))
    with pytest.raises(ChunkflowError, match="cc mode always reads one voxel"):
        blockwise.setup("cc", labels, out, (32, 32, 32), margin=(2, 2, 2))
    prob = volume(tmp_path, "prob", np.zeros((8, 8, 8), np.float32), "probability_map")
    with pytest.raises(ChunkflowError, match="needs a threshold for a float map"):
        blockwise.setup("cc", prob, out, (8, 8, 8))
    blockwise.setup("cc", labels, out, (32, 32, 32))
    with pytest.raises(ChunkflowError, match="already holds a volume"):
        blockwise.setup("cc", labels, out, (32, 32, 32))
    with pytest.raises(ChunkflowError, match="no segmentation job there"):
        blockwise.load_plan(labels)

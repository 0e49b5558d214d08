"""Segmentation operators through the real entry point, on the bundled gala data."""

import json

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.io.h5 import read_h5, write_h5
from chunkflow.io.tif import read_tif
from tests.conftest import error_line, read_stack
from tests.segmentation.test_agglomerate import affinities, p1_affinities


@pytest.fixture
def affs_h5(tmp_path):
    write_h5(Chunk(p1_affinities(), (0, 0, 0), (10, 10, 10)), str(tmp_path / "affs.h5"))
    return tmp_path / "affs.h5"


def test_tutorial_evaluation_lines(run_cli, gala, tmp_path):
    result = run_cli(
        f"read-h5 --file-name {gala}/test-gt.lzf.h5 -o gt write-tif -i gt -f gt.tif "
        f"read-h5 -f {gala}/test-ws.lzf.h5 -o seg write-tif -i seg -f seg.tif"
    )
    result = run_cli(
        "read-tif --file-name gt.tif -o gt read-tif --file-name seg.tif -o seg "
        "evaluate-segmentation -g gt -s seg -o metrics.json"
    )
    lines = result.out.splitlines()
    assert lines[:4] == [
        "Rand split: 0.471275",
        "Rand merge: 0.968520",
        "VOI split: 1.647744",
        "VOI merge: 0.184529",
    ]
    assert json.loads((tmp_path / "metrics.json").read_text())["voi_split"] == pytest.approx(
        1.647744, abs=1e-6
    )


def test_tutorial_agglomerate_then_evaluate(run_cli, gala, affs_h5, tmp_path):
    run_cli(
        "read-h5 --file-name affs.h5 -o affs agglomerate --threshold 0.7 "
        "--aff-threshold-low 0.001 --aff-threshold-high 0.9999 -i affs -o seg "
        "--keep-fragments frag write-tif -i seg -f seg.tif write-h5 -i frag -f frag.h5"
    )
    frag, seg = read_h5("frag.h5"), read_tif("seg.tif")
    assert seg.is_segmentation and seg.shape == (50, 100, 200)
    assert len(np.unique(frag.array)) > len(np.unique(seg.array)) > 10
    result = run_cli(
        f"read-h5 -f affs.h5 -o affs read-h5 -f {gala}/test-ws.lzf.h5 -o ws -x 10 10 10 "
        "agglomerate -i affs -f ws -t 0.5 -o seg "
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o gt -x 10 10 10 evaluate-segmentation"
    )
    metrics = dict(line.split(": ") for line in result.out.splitlines())
    assert float(metrics["VOI merge"]) == pytest.approx(0.187, abs=0.02)
    assert float(metrics["VOI split"]) == pytest.approx(1.144, abs=0.02)


def test_watershed_threshold_and_cc(run_cli, gala, affs_h5):
    run_cli("read-h5 -f affs.h5 -o affs watershed -i affs -o frag write-h5 -i frag -f frag.h5")
    assert read_h5("frag.h5").is_segmentation
    run_cli(
        f"read-h5 -f {gala}/test-p1.lzf.h5 -o p threshold -i p -o b -t 0.5 "
        "connected-components -i p -o cc -t 0.5 --connectivity 26 "
        "write-h5 -i b -f b.h5 write-h5 -i cc -f cc.h5"
    )
    binary, labels = read_h5("b.h5"), read_h5("cc.h5")
    assert binary.dtype == np.uint8 and labels.dtype == np.uint32
    np.testing.assert_array_equal(labels.array > 0, binary.array > 0)


def test_mask_out_objects_and_remap(run_cli, gala):
    run_cli(
        f"read-h5 -f {gala}/test-gt.lzf.h5 -o gt mask-out-objects -i gt -o big -d 5000 "
        "remap -i big -o small write-h5 -i small -f s.h5"
    )
    gt = read_stack(gala / "test-gt.lzf.h5")
    ids, counts = np.unique(gt[gt > 0], return_counts=True)
    kept = int((counts >= 5000).sum())
    out = read_h5("s.h5").array
    assert sorted(np.unique(out)) == list(range(kept + 1))


@pytest.fixture
def mask_volume(run_cli, tmp_path):
    """A 2-mip volume; the mask at mip 1 keeps the left half in x."""
    run_cli("create-info -v mask --volume-size 8 16 16 --max-mip 1 -f 1 2 2 -b 8 8 8 -d uint8")
    keep = np.zeros((8, 8, 8), np.uint8)
    keep[:, :, :4] = 1
    from chunkflow.io.precomputed import write_precomputed

    write_precomputed(Chunk(keep, (0, 0, 0), (1, 2, 2)), f"file://{tmp_path}/mask", mip=1)
    return tmp_path / "mask"


def test_mask_at_a_coarser_mip(run_cli, mask_volume):
    run_cli(
        "create-chunk -s 8 16 16 --pattern random --seed 1 -o img copy-var -i img -o orig "
        "mask -i img -v mask -m 1 write-h5 -i img -f m.h5 write-h5 -i orig -f o.h5"
    )
    masked, original = read_h5("m.h5").array, read_h5("o.h5").array
    np.testing.assert_array_equal(masked[:, :, :8], original[:, :, :8])
    assert not masked[:, :, 8:].any()
    run_cli(
        "create-chunk -s 8 16 16 --pattern random -o img mask -i img -v mask -m 1 "
        "--inverse write-h5 -i img -f i.h5"
    )
    assert not read_h5("i.h5").array[:, :, :8].any()


def test_mask_skips_all_zero_tasks_and_resumes(run_cli, mask_volume, tmp_path):
    run_cli(
        "create-bbox -b 0-8_0-16_8-16 create-chunk --pattern random -o img "
        "mask -i img -v mask -m 1 --skip-to final write-h5 -i img -f skipped.h5 "
        "write-h5 --name final -i img -f final.h5"
    )
    assert not (tmp_path / "skipped.h5").exists() and (tmp_path / "final.h5").exists()
    run_cli(
        "create-bbox -b 0-8_0-16_0-16 create-chunk --pattern random -o img "
        "mask -i img -v mask -m 1 --check-all-zero write-h5 -i img -f unchanged.h5"
    )
    assert read_h5("unchanged.h5").array[:, :, 8:].any()
    # without --check-all-zero or --skip-to a fully masked chunk goes on as zeros (1.x wrote them)
    result = run_cli(
        "create-bbox -b 0-8_0-16_8-16 create-chunk --pattern random -o img "
        "mask -i img -v mask -m 1 write-h5 -i img -f zeros.h5"
    )
    assert "skipped" not in result.err
    zeros = read_h5("zeros.h5")
    assert zeros.array.shape == (8, 16, 8) and not zeros.array.any()


BAD = [
    ("create-chunk -s 4 4 4 -t float32 agglomerate -i chunk", "affinity map (3, z, y, x)"),
    ("create-chunk -s 4 4 4 -t float32 -c 3 connected-components -t 0.5", "needs a 3D chunk"),
    (
        "create-chunk -s 4 4 4 -o seg create-chunk -s 4 4 5 -t uint32 -o gt evaluate-segmentation",
        "box 0-4_0-4_0-4) and chunk 'gt' (voxel size (1, 1, 1), box 0-4_0-4_0-5) do not cover",
    ),
    (
        "create-chunk -s 4 4 4 -t float32 -o seg create-chunk -s 4 4 4 -t uint32 -o gt "
        "evaluate-segmentation",
        "must hold integer labels",
    ),
    ("create-chunk -s 4 4 4 -t float32 -c 3 -o affs agglomerate -i affs -t 2", "out of range"),
    (
        "create-chunk -s 4 4 4 -t float32 -c 3 -o affs "
        "agglomerate -i affs --aff-threshold-high 1.2",
        "--aff-threshold-high 1.2 is out of range",
    ),
    (
        "create-chunk -s 4 4 4 -t float32 -c 3 -o affs "
        "watershed -i affs --aff-threshold-low 0.6 --aff-threshold-high 0.5",
        "--aff-threshold-low 0.6 must be below --aff-threshold-high 0.5",
    ),
    ("create-chunk -s 4 4 4 -t float32 mask-out-objects -d 3", "not an integer segmentation"),
    ("create-chunk -s 4 4 4 --voxel-offset 8 0 0 mask -v mask -m 1", "does not cover the chunk"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input(run_cli, mask_volume, tmp_path, args, message):
    result = run_cli(f"{args} write-h5 -f out.h5", expect=1)
    assert message in error_line(result)
    assert not (tmp_path / "out.h5").exists()


def test_perfect_affinities_round_trip_through_cli(run_cli, gala, tmp_path):
    gt = read_stack(gala / "test-gt.lzf.h5")[:10, :40, :40]
    write_h5(Chunk(affinities(gt)), str(tmp_path / "perfect.h5"))
    write_h5(Chunk(gt), str(tmp_path / "gt.h5"))
    result = run_cli(
        "read-h5 -f perfect.h5 -o affs agglomerate -i affs -o seg -t 0.5 read-h5 -f gt.h5 -o gt "
        "evaluate-segmentation"
    )
    metrics = dict(line.split(": ") for line in result.out.splitlines())
    assert float(metrics["VOI split"]) < 0.05 and float(metrics["VOI merge"]) < 0.05


def test_scoring_function_outside_waterz_grammar_is_refused_before_compiling(run_cli, monkeypatch):
    import waterz

    def compiled(*args, **kwargs):
        raise AssertionError("waterz was called")

    monkeypatch.setattr(waterz, "agglomerate", compiled)
    injected = "OneMinus<MeanAffinity<RegionGraphType, ScoreValue>>; int pwned = system(0)"
    result = run_cli(
        ["create-chunk", "-c", "3", "-t", "float32", "agglomerate", "-s", injected], expect=2
    )
    line = error_line(result)
    assert "agglomerate: Invalid value for '-s' / '--scoring-function'" in line
    assert "is not a waterz scoring function (unexpected ';')" in line
    assert "OneMinus|Invert|Square<F>" in line  # what is accepted, in the same line

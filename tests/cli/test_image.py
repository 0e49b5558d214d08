import json

import numpy as np
import pytest

from chunkflow.chunk import Chunk
from chunkflow.geometry import BoundingBox
from chunkflow.image.downsample import pyramid
from chunkflow.image.filters import channel_voting, gaussian_filter
from chunkflow.image.normalize import normalize_intensity, normalize_section_contrast, quantize
from chunkflow.io.h5 import read_h5
from chunkflow.io.precomputed import read_precomputed
from tests.conftest import error_line, read_stack


def test_map_operators_match_the_library(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 2 8 8 -t float32 -c 3 --pattern random --seed 0 --voxel-offset 2 4 6 "
        "-o affs "
        "channel-voting -i affs -o seg "
        "quantize -i affs -o q --mode z "
        "gaussian-filter -i q -o g -s 2 --3d "
        "normalize-intensity -i g -o n "
        "write-h5 -i seg -f seg.h5 write-h5 -i q -f q.h5 write-h5 -i g -f g.h5 "
        "write-h5 -i n -f n.h5"
    )
    affs = Chunk.create((2, 8, 8), "float32", "random", (2, 4, 6), num_channels=3, seed=0)
    seg, q = read_h5(str(tmp_path / "seg.h5")), read_h5(str(tmp_path / "q.h5"))
    g, n = read_h5(str(tmp_path / "g.h5")), read_h5(str(tmp_path / "n.h5"))
    np.testing.assert_array_equal(seg.array, channel_voting(affs).array)
    assert seg.dtype == np.uint8 and set(np.unique(seg.array)) <= {1, 2, 3}
    assert seg.voxel_offset == (2, 4, 6)
    np.testing.assert_array_equal(q.array, quantize(affs, "z").array)
    np.testing.assert_array_equal(g.array, gaussian_filter(quantize(affs, "z"), 2, True).array)
    assert g.dtype == np.uint8 and g.array.var() < q.array.var()
    assert n.dtype == np.float32 and 0 <= n.array.min() < n.array.max() <= 1
    np.testing.assert_allclose(n.array, g.array / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(n.array, normalize_intensity(g).array)


def test_downsample_1_3_3_geometry(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 2 9 9 --voxel-offset 0 3 6 --voxel-size 40 4 4 "
        "downsample -f 1 3 3 write-h5 -f d.h5"
    )
    out = read_h5(str(tmp_path / "d.h5"))
    assert out.shape == (2, 3, 3) and out.voxel_offset == (0, 1, 2)
    assert out.voxel_size == (40, 12, 12) and out.dtype == np.uint8
    chunk = Chunk.create((2, 9, 9), "uint8", "sin", (0, 3, 6), (40, 4, 4))
    means = chunk.array.reshape(2, 3, 3, 3, 3).astype(float).mean(axis=(2, 4))
    np.testing.assert_array_equal(out.array, np.floor(means))


@pytest.mark.parametrize(
    "create, factor",
    [
        ("create-chunk -s 4 32 32 --voxel-offset 4 32 64 --voxel-size 40 4 4", "1 2 2"),
        (
            "create-chunk -s 8 16 16 -t uint32 --pattern random --seed 3 --voxel-offset 8 16 0",
            "2 2 2",
        ),
    ],
)
def test_downsample_upload_writes_mips_start_to_stop_minus_one(run_cli, tmp_path, create, factor):
    result = run_cli(
        f"{create} save -v vol downsample-upload -v vol -f {factor} --start-mip 1 --stop-mip 3"
    )
    path = f"file://{tmp_path}/vol"
    info = json.loads((tmp_path / "vol" / "info").read_text())
    assert len(info["scales"]) == 3  # mips 0, 1, 2: the stop mip 3 is not written
    bbox0 = BoundingBox.from_string(
        {"1 2 2": "4-8_32-64_64-96", "2 2 2": "8-16_16-32_0-16"}[factor]
    )
    chunk = read_precomputed(path, bbox0, 0)
    for mip, expected in zip((1, 2), pyramid(chunk, tuple(map(int, factor.split())), 2)):
        back = read_precomputed(path, expected.bbox, mip)
        assert back.voxel_size == expected.voxel_size and back.dtype == chunk.dtype
        np.testing.assert_array_equal(back.array, expected.array)
        assert f"wrote mip {mip}" in result.err
    assert "wrote mip 3" not in result.err


def test_downsample_upload_uses_the_global_mip(run_cli, tmp_path):
    run_cli("create-chunk -s 2 16 16 save -v vol downsample-upload -v vol -p 2")
    chunk = read_precomputed(f"file://{tmp_path}/vol", BoundingBox.from_string("0-2_0-8_0-8"), 1)
    run_cli("--mip 1 cutout -v vol -s 0 0 0 -z 2 8 8 downsample-upload -v vol -p 3", expect=0)
    back = read_precomputed(f"file://{tmp_path}/vol", BoundingBox.from_string("0-2_0-4_0-4"), 2)
    np.testing.assert_array_equal(back.array, pyramid(chunk, (1, 2, 2), 1)[0].array)


@pytest.mark.parametrize(
    "chain, code, words",
    [
        (
            "create-chunk -s 4 30 32 save -v vol downsample-upload -v vol -s 1 -p 3",
            1,
            ["downsample-upload", "size 4 30 32 is not divisible by 1 4 4"],
        ),
        (
            "create-chunk -s 4 32 32 --voxel-offset 0 2 0 downsample-upload -v vol -s 1 -p 3",
            1,
            ["voxel offset 0 2 0 is not divisible by 1 4 4"],
        ),
        (
            "create-chunk -s 4 32 32 save -v vol downsample-upload -v vol -s 2 -p 2",
            1,
            ["--stop-mip 2 must be above --start-mip 2"],
        ),
        ("create-chunk downsample -f 0 2 2", 2, ["--factor", "positive"]),
        ("create-chunk -s 2 4 4 downsample -f 1 3 3", 1, ["not divisible by 1 3 3"]),
        ("create-chunk quantize", 1, ["quantize", "float map"]),
        ("create-chunk normalize-section-contrast -l 1.5", 2, ["--lower-clip-fraction"]),
        ("create-chunk -t float32 normalize-section-contrast", 1, ["uint8 image, got float32"]),
        ("create-chunk -s 2 2 2 channel-voting", 1, ["(c, z, y, x) map"]),
    ],
)
def test_bad_input_is_one_line(run_cli, chain, code, words):
    line = error_line(run_cli(chain, expect=code))
    for word in words:
        assert word in line, line


def write_levels(folder, histograms):
    folder.mkdir(parents=True)
    for z, hist in histograms.items():
        (folder / str(z)).write_text(json.dumps({"levels": [int(c) for c in hist]}))


def test_section_contrast_with_level_files_as_in_the_tutorial(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    histograms = {z: rng.integers(0, 1000, 256) for z in range(3, 7)}
    write_levels(tmp_path / "histogram" / "levels" / "1", histograms)
    run_cli(
        "create-chunk -s 4 16 16 --voxel-offset 3 0 0 --pattern random --seed 1 "
        'normalize-section-contrast -p "histogram/levels/1" -l 0.0023 -u 0.01 write-h5 -f n.h5'
    )
    chunk = Chunk.create((4, 16, 16), "uint8", "random", (3, 0, 0), seed=1)
    expected = normalize_section_contrast(
        chunk, 0.0023, 0.01, levels_path=f"file://{tmp_path}/histogram/levels/1"
    )
    np.testing.assert_array_equal(read_h5(str(tmp_path / "n.h5")).array, expected.array)
    # one section too many: z = 7 has no file
    line = error_line(
        run_cli(
            "create-chunk -s 5 16 16 --voxel-offset 3 0 0 "
            "normalize-section-contrast -p histogram/levels/1",
            expect=1,
        )
    )
    assert "normalize-section-contrast" in line and "histogram/levels/1/7 is missing" in line


def test_section_contrast_on_the_gala_image(run_cli, tmp_path, gala):
    run_cli(
        f"read-h5 -f {gala / 'test-image.h5'} -d /stack normalize-section-contrast "
        "-l 0.02 -u 0.02 write-h5 -f n.h5"
    )
    image = read_stack(gala / "test-image.h5")
    out = read_h5(str(tmp_path / "n.h5")).array
    assert image.shape == (50, 100, 200) and out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out == 0, image == 0)
    for section, result in zip(image, out):
        order = np.argsort(section, axis=None, kind="stable")
        assert np.all(np.diff(result.ravel()[order].astype(int)) >= 0)  # monotone mapping
        nonzero = result[section > 0]
        assert nonzero.min() == 1 and nonzero.max() == 255
        assert (nonzero == 255).mean() >= 0.02 and (nonzero == 1).mean() >= 0.02
    # contrast is stretched: the spread grows in every section
    assert np.all(out.reshape(50, -1).std(axis=1) > image.reshape(50, -1).std(axis=1))


def test_downsample_upload_non_aligned_writes(run_cli, tmp_path):
    run_cli("create-chunk -s 4 64 64 --pattern zero save -v vol -b 4 64 64")
    chain = "create-chunk -s 4 32 32 -o part downsample-upload -i part -v vol -p 2"
    line = error_line(run_cli(chain, expect=1))
    assert "not aligned" in line and "--non-aligned-writes" in line
    run_cli(f"{chain} --fill-missing")
    back = read_precomputed(f"file://{tmp_path}/vol", BoundingBox.from_string("0-4_0-32_0-32"), 1)
    part = Chunk.create((4, 32, 32), "uint8", "sin")
    np.testing.assert_array_equal(back.array[:, :16, :16], pyramid(part, (1, 2, 2), 1)[0].array)
    assert not back.array[:, 16:, :].any() and not back.array[:, :, 16:].any()

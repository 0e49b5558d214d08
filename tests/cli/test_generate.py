import os

import numpy as np

from chunkflow.chunk import Chunk
from chunkflow.io.h5 import read_h5
from tests.conftest import error_line


def task_files(run_cli, tmp_path, args):
    out = tmp_path / "tasks"
    out.mkdir(exist_ok=True)
    for f in out.iterdir():
        f.unlink()
    run_cli(f"{args} create-chunk -t uint8 write-h5 -f tasks/")
    return sorted(os.listdir(out))


def test_create_chunk_options(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 3 4 5 -t uint16 --pattern random --seed 7 --voxel-offset 1 2 3 "
        "--voxel-size 40 4 4 -c 2 --layer-type image -o img write-h5 -i img -f a.h5"
    )
    chunk = read_h5("a.h5")
    assert chunk.shape == (2, 3, 4, 5) and chunk.dtype == np.uint16
    assert chunk.voxel_offset == (1, 2, 3) and chunk.voxel_size == (40, 4, 4)
    np.testing.assert_array_equal(
        chunk.array, Chunk.create((3, 4, 5), "uint16", "random", num_channels=2, seed=7).array
    )


def test_create_chunk_takes_the_task_bbox(run_cli):
    run_cli("create-bbox -s 1 2 3 -p 4 6 8 create-chunk write-h5 -f a.h5")
    assert read_h5("a.h5").bbox.string == "1-4_2-6_3-8"


def test_generate_tasks_grid_and_index_range(run_cli, tmp_path):
    names = task_files(
        run_cli, tmp_path, "generate-tasks --roi-start 0 0 0 --roi-stop 4 8 8 --chunk-size 4 4 4"
    )
    assert names == ["0-4_0-4_0-4.h5", "0-4_0-4_4-8.h5", "0-4_4-8_0-4.h5", "0-4_4-8_4-8.h5"]
    names = task_files(
        run_cli,
        tmp_path,
        "generate-tasks -s 0 0 0 -r 4 8 8 -c 4 4 4 --task-index-start 1 --task-index-stop 3",
    )
    assert names == ["0-4_0-4_4-8.h5", "0-4_4-8_0-4.h5"]


def test_generate_tasks_respect_stop_and_alignment(run_cli, tmp_path):
    names = task_files(
        run_cli, tmp_path, "generate-tasks -s 0 0 0 -z 1 1 10 -c 1 1 4 --respect-stop"
    )
    assert names == ["0-1_0-1_0-4.h5", "0-1_0-1_4-8.h5", "0-1_0-1_8-10.h5"]
    names = task_files(
        run_cli, tmp_path, "generate-tasks -s 0 0 3 -z 1 1 4 -c 1 1 4 --aligned-block-size 1 1 4"
    )
    assert names == ["0-1_0-1_0-4.h5", "0-1_0-1_4-8.h5"]


def test_generate_tasks_grid_size_and_stride(run_cli, tmp_path):
    names = task_files(run_cli, tmp_path, "generate-tasks -c 1 2 2 -g 1 1 3 --stride 1 2 1")
    assert names == ["0-1_0-2_0-2.h5", "0-1_0-2_1-3.h5", "0-1_0-2_2-4.h5"]


def test_generate_tasks_from_volume_bounds(run_cli, tmp_path):
    run_cli("create-chunk -s 4 8 8 --voxel-offset 2 0 8 save -v vol")
    names = task_files(run_cli, tmp_path, "generate-tasks -v vol -c 4 4 8")
    assert names == ["2-6_0-4_8-16.h5", "2-6_4-8_8-16.h5"]
    result = run_cli("generate-tasks -v vol -c 4 4 8", expect=0)
    assert "2 tasks" in result.err


def test_bad_regions(run_cli):
    assert "needs --start" in error_line(run_cli("generate-tasks -c 1 1 1 -s 0 0 0", expect=1))
    assert "--chunk-size" in error_line(run_cli("generate-tasks -s 0 0 0 -z 1 1 1", expect=2))
    assert "empty" in error_line(run_cli("create-bbox -s 5 5 5 -p 5 6 6", expect=1))

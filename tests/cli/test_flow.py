import os

import numpy as np
import pytest

from chunkflow.io.h5 import read_h5
from tests.conftest import error_line


def test_skip_none(run_cli, tmp_path):
    run_cli("create-chunk -s 2 2 2 -o a skip-none -i b write-h5 -i a -f a.h5")
    assert not (tmp_path / "a.h5").exists()
    run_cli("create-chunk -s 2 2 2 -o a skip-none -i a write-h5 -i a -f a.h5")
    assert (tmp_path / "a.h5").exists()


@pytest.mark.parametrize(
    "mode, existing, runs",
    [
        ("exist", {"0-2_0-2_0-2.h5": b"x"}, False),
        ("exist", {}, True),
        ("missing", {}, False),
        ("missing", {"0-2_0-2_0-2.h5": b""}, True),
        ("empty", {"0-2_0-2_0-2.h5": b""}, False),
        ("empty", {"0-2_0-2_0-2.h5": b"x"}, True),
    ],
)
def test_skip_task_by_file(run_cli, tmp_path, mode, existing, runs):
    (tmp_path / "r").mkdir()
    for name, content in existing.items():
        (tmp_path / "r" / name).write_bytes(content)
    run_cli(
        f"create-bbox -b 0-2_0-2_0-2 skip-task-by-file -p r/ -s .h5 -m {mode} "
        "create-chunk write-h5 -f out.h5"
    )
    assert (tmp_path / "out.h5").exists() == runs


def test_rerun_skips_completed_tasks(run_cli, tmp_path):
    (tmp_path / "done").mkdir()
    (tmp_path / "out").mkdir()
    chain = (
        "generate-tasks -s 0 0 0 -z 2 2 4 -c 2 2 2 skip-task-by-file -p done/ "
        "create-chunk write-h5 -f out/ mark-complete -p done/"
    )
    run_cli(chain)
    assert len(os.listdir(tmp_path / "out")) == 2
    for f in (tmp_path / "out").iterdir():
        f.unlink()
    os.remove(tmp_path / "done" / "0-2_0-2_2-4")
    run_cli(chain)
    assert os.listdir(tmp_path / "out") == ["0-2_0-2_2-4.h5"]


def test_mark_complete_needs_a_bbox_and_a_folder(run_cli):
    assert "no bounding box" in error_line(run_cli("mark-complete -p x_", expect=1))
    assert "output folder" in error_line(
        run_cli("create-bbox -b 0-1_0-1_0-1 mark-complete -p nowhere/", expect=1)
    )


def test_copy_and_delete(run_cli, tmp_path):
    run_cli(
        "create-chunk -s 2 2 2 copy-var -f chunk -t other delete-var -v chunk "
        "write-h5 -i other -f other.h5"
    )
    assert (tmp_path / "other.h5").exists()
    line = error_line(
        run_cli(
            "create-chunk copy-var -i chunk -o c2 delete-chunk -i chunk write-h5 -i chunk -f x.h5",
            expect=1,
        )
    )
    assert "write-h5" in line and "no chunk named 'chunk'" in line and "c2" in line
    assert "no chunk named 'zz'" in error_line(run_cli("create-chunk delete-chunk -i zz", expect=1))


def test_crop_margin(run_cli):
    run_cli(
        "create-chunk -s 6 8 10 --voxel-offset 10 10 10 crop-margin -m 1 2 3 -o c "
        "write-h5 -i c -f c.h5"
    )
    assert read_h5("c.h5").bbox.string == "11-15_12-16_13-17"
    run_cli("create-chunk -s 6 8 10 create-bbox -b 1-2_1-2_1-2 crop-margin write-h5 -f t.h5")
    assert read_h5("t.h5").bbox.string == "1-2_1-2_1-2"
    assert "leaves nothing" in error_line(
        run_cli("create-chunk -s 2 8 8 crop-margin -m 1 0 0", expect=1)
    )


def test_plugin_from_file_with_outputs_and_args(run_cli, tmp_path):
    helper_dir = tmp_path / "plug"
    helper_dir.mkdir()
    (helper_dir / "helper.py").write_text("def scale(x, f):\n    return x * f\n")
    (helper_dir / "double.py").write_text(
        "import numpy as np\n"
        "from helper import scale\n"
        "def execute(a, b, factor=1, name='x'):\n"
        "    assert name == 'hello world'\n"
        "    return scale(np.asarray(a), factor), b + 1\n"
    )
    run_cli(
        "create-chunk -s 2 3 4 -t float32 --voxel-offset 1 1 1 -o a create-chunk -s 2 3 4 "
        "-t float32 -o b plugin -f plug/double -i a,b -o x,y "
        "-a 'factor=3;name=hello world' write-h5 -i x -f x.h5 write-h5 -i y -f y.h5"
    )
    x, y = read_h5("x.h5"), read_h5("y.h5")
    assert x.voxel_offset == (1, 1, 1)  # a bare array takes the first input's place
    np.testing.assert_allclose(x.array, 3 * y.array - 3, rtol=1e-6)


def test_builtin_plugin(run_cli):
    run_cli(
        "create-chunk -s 2 2 2 -o a plugin -f invert -i a -o b write-h5 -i a -f a.h5 "
        "write-h5 -i b -f b.h5"
    )
    np.testing.assert_array_equal(read_h5("b.h5").array, 255 - read_h5("a.h5").array)


def test_plugin_errors(run_cli, tmp_path):
    assert "unknown plugin 'nope'" in error_line(
        run_cli("create-chunk plugin -f nope -i chunk", expect=1)
    )
    (tmp_path / "noexec.py").write_text("x = 1\n")
    assert "defines no function execute" in error_line(
        run_cli("create-chunk plugin -f noexec.py -i chunk", expect=1)
    )
    (tmp_path / "two.py").write_text("def execute(c):\n    return c\n")
    assert "returned 1 value(s) for 2" in error_line(
        run_cli("create-chunk plugin -f two.py -i chunk -o a,b", expect=1)
    )
    assert "expected key=value" in error_line(
        run_cli("create-chunk plugin -f two.py -i chunk -a 'oops'", expect=1)
    )

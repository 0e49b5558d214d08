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


@pytest.mark.parametrize(
    "body, message",
    [
        ("import sys\n    sys.exit(0)", "sys.exit(0) was called"),
        ("import sys\n    sys.exit('done')", "sys.exit('done') was called"),
        ("raise GeneratorExit('x')", "GeneratorExit: x"),
        ("class Stop(BaseException):\n        pass\n    raise Stop('out')", "Stop: out"),
    ],
)
def test_a_plugin_cannot_end_the_run(run_cli, tmp_path, body, message):
    name = f"leave_{abs(hash(body))}.py"  # plugins are loaded once per process and name
    (tmp_path / name).write_text(f"def execute(chunk):\n    {body}\n")
    result = run_cli(f"create-chunk plugin -f {name} write-h5 -f out.h5", expect=1)
    assert message in error_line(result)
    assert error_line(result).startswith("chunkflow: error: plugin (task 0-64_0-64_0-64): ")
    assert not (tmp_path / "out.h5").exists()  # the chain did not go on


def test_a_plugin_that_exits_while_loading_is_an_error(run_cli, tmp_path):
    (tmp_path / "exits_on_load.py").write_text("import sys\nsys.exit(0)\n")
    assert "sys.exit(0) was called" in error_line(
        run_cli("create-chunk plugin -f exits_on_load.py", expect=1)
    )


def test_ctrl_c_and_sigterm_in_a_plugin_still_stop_the_run(run_cli, tmp_path):
    (tmp_path / "ctrl_c.py").write_text("def execute(chunk):\n    raise KeyboardInterrupt\n")
    assert "Traceback" not in run_cli("create-chunk plugin -f ctrl_c.py", expect=130).err
    (tmp_path / "term.py").write_text(
        "from chunkflow.errors import Terminated\ndef execute(chunk):\n    raise Terminated()\n"
    )
    assert "terminated (SIGTERM)" in run_cli("create-chunk plugin -f term.py", expect=143).err


def test_a_plugin_that_exits_fails_only_its_task_in_a_queue_worker(run_cli, tmp_path):
    (tmp_path / "exits.py").write_text("import sys\ndef execute(chunk):\n    sys.exit(0)\n")
    run_cli("generate-tasks --roi-start 0 0 0 --roi-size 4 4 8 -c 4 4 4 -q ./q")
    result = run_cli(
        "fetch-task -q ./q --max-retries 0 --wait-seconds 0 --retry-times 0 create-chunk "
        "plugin -f exits.py delete-task-in-queue",
        expect=1,
    )
    assert "2 dead-lettered" in error_line(result)  # the worker went on to the second task
    assert "0-4_0-4_4-8): sys.exit(0) was called" in result.err

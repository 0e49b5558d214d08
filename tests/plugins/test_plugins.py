import pytest

from chunkflow.errors import ChunkflowError
from chunkflow.plugins import builtin_plugins, find_plugin, parse_args


def test_args_are_literals_never_code(tmp_path):
    marker = tmp_path / "pwned"
    args = parse_args(f"a=1;b=(1, 2);c=0.5;d=name;e=[1,'x'];f=__import__('os').mkdir('{marker}')")
    assert args["a"] == 1 and args["b"] == (1, 2) and args["c"] == 0.5
    assert args["d"] == "name" and args["e"] == [1, "x"]
    assert isinstance(args["f"], str)  # kept as text, not run
    assert not marker.exists()


def test_bad_args():
    with pytest.raises(ChunkflowError):
        parse_args("1x=3")
    assert parse_args(None) == {} and parse_args("a=1;") == {"a": 1}


def test_builtin_lookup():
    assert "invert" in builtin_plugins()
    assert find_plugin("invert").endswith("invert.py")
    with pytest.raises(ChunkflowError, match="built-ins: invert"):
        find_plugin("no_such_plugin")

"""The viewer operators through the real command line: serve, answer on loopback, stop, go on."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest

from tests.conftest import GALA, error_line
from tests.viewer.helpers import get, neuroglancer_state

pytest.importorskip("neuroglancer")
pytest.importorskip("microviewer")

NM = 1e-9


@contextmanager
def serving(args: str, cwd):
    """Run `chunkflow ARGS` in a subprocess; yield the URL it prints first.

    ARGS hold a viewer with --serve-seconds; on leaving, the process must finish by itself
    with exit code 0.
    """
    command = [sys.executable, "-m", "chunkflow", *args.split()]
    process = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.communicate(timeout=30)[1]
        yield url
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_neuroglancer_shows_chunks_and_a_local_volume_then_goes_on(run_cli, tmp_path):
    run_cli(f"read-h5 -f {GALA}/test-gt.lzf.h5 -l segmentation -e uint32 save -v gt-volume")
    reads = (
        f"read-h5 -f {GALA}/test-image.h5 -o image -x 10 10 10 "
        f"read-h5 -f {GALA}/test-gt.lzf.h5 -o gt -l segmentation "
    )
    viewer = "neuroglancer -c image,gt --layer volume=gt-volume -v 40 4 4 --layout xy"
    with serving(f"{reads} {viewer} --serve-seconds 3", tmp_path) as url:
        state = neuroglancer_state(url)
        assert [layer["name"] for layer in state["layers"]] == ["image", "gt", "volume"]
        assert [layer["type"] for layer in state["layers"]] == [
            "image",
            "segmentation",
            "segmentation",
        ]
        assert state["dimensions"]["z"] == [pytest.approx(40 * NM), "m"]  # -v wins
        assert state["dimensions"]["x"] == [pytest.approx(4 * NM), "m"]
        assert state["layout"] == "xy"
        volume = state["layers"][2]["source"]
        volume = volume if isinstance(volume, str) else volume[0]["url"]
        assert b'"segmentation"' in get(volume[len("precomputed://") :] + "/info")
        assert b"neuroglancer" in get(url).lower()


def test_the_chain_goes_on_after_serving(tmp_path):
    args = "create-chunk neuroglancer --serve-seconds 0.5 write-h5 -f after.h5"
    with serving(args, tmp_path):
        pass
    assert (tmp_path / "after.h5").exists()


def test_ctrl_c_stops_serving_and_the_chain_goes_on(tmp_path):
    command = [sys.executable, "-m", "chunkflow", "create-chunk", "neuroglancer"]
    process = subprocess.Popen(
        [*command, "write-h5", "-f", "after.h5"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not inherited ignored
    )
    try:
        url = process.stdout.readline().strip()
        assert b"neuroglancer" in get(url).lower()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "interrupted, the chain goes on" in err
    assert (tmp_path / "after.h5").exists()


def test_view_serves_one_chunk_with_its_segmentation(tmp_path):
    args = (
        f"read-h5 -f {GALA}/test-image.h5 -o image read-h5 -f {GALA}/test-gt.lzf.h5 -o gt "
        "-l segmentation view -i image -s gt --serve-seconds 2"
    )
    with serving(args, tmp_path) as url:
        parameters = json.loads(get(url + "parameters"))
        assert parameters["viewtype"] == "hyper"
        assert parameters["bounds"] == [0, 0, 0, 200, 100, 50]
        assert len(get(url + "channel")) == 50 * 100 * 200


@pytest.fixture
def taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("operator", ["neuroglancer", "view"])
def test_port_in_use_is_one_line(run_cli, taken_port, operator):
    result = run_cli(f"create-chunk {operator} -p {taken_port} --serve-seconds 0", expect=1)
    line = error_line(result)
    assert f"cannot serve {'microviewer' if operator == 'view' else 'neuroglancer'}" in line
    assert f"127.0.0.1:{taken_port}" in line


@pytest.mark.parametrize(
    "args, message",
    [
        ("neuroglancer -c chunk,nope", "no chunk named 'nope'"),
        ("view -i nope", "no chunk named 'nope'"),
        ("view -s nope", "no chunk named 'nope'"),
        ("neuroglancer --layer nonsense", "expected NAME=PATH"),
        ("neuroglancer --layer =gs://bucket/seg", "expected NAME=PATH"),
        ("neuroglancer --layer v=missing", "no precomputed volume there"),
        ("neuroglancer --layer chunk=gs://bucket/seg", "layer names used twice"),
        ("neuroglancer --layout 5panel", "'--layout'"),
    ],
)
def test_bad_input_is_one_line(run_cli, args, message):
    result = run_cli(f"create-chunk {args} --serve-seconds 0", expect=None)
    assert result.code != 0
    assert message in error_line(result)


def test_viewer_help_imports_no_viewer():
    code = (
        "import sys; from chunkflow.cli.main import main; "
        "main(['neuroglancer', '--help']); main(['view', '--help']); "
        "viewers = ('neuroglancer', 'microviewer', 'tornado'); "
        "print('LOADED', [m for m in viewers if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout
    assert "--serve-seconds" in out.stdout and "--chunk-names" in out.stdout

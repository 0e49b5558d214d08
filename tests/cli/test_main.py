"""The chain itself: help, version, streaming, skip/finalizer rule, dry run, errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chunkflow import __version__
from chunkflow.cli.framework import Stage
from chunkflow.pipeline import RunConfig
from chunkflow.task import Task
from tests.conftest import error_line

CHUNKFLOW = str(Path(sys.executable).parent / "chunkflow")


def test_version(run_cli):
    assert __version__ in run_cli("--version").out


def test_help_lists_operators_by_family_with_aliases(run_cli):
    out = run_cli("--help").out
    for title in ("Create chunks and tasks", "Read and write", "Task flow"):
        assert title in out
    for name in (
        "create-chunk",
        "generate-tasks",
        "read-h5",
        "write-h5",
        "cutout",
        "save",
        "create-info",
        "skip-all-zero",
        "mark-complete",
        "plugin",
        "delete-chunk",
    ):
        assert f"\n  {name} " in out
    assert "alias: load-h5" in out and "alias: save-precomputed" in out
    # one line per operator
    lines = [line for line in out.splitlines() if line.startswith("  read-h5 ")]
    assert len(lines) == 1 and "Read a chunk from an HDF5 file" in lines[0]


def test_no_arguments_prints_help(run_cli):
    assert "Create chunks and tasks" in run_cli("").out


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from chunkflow.cli.main import main; main(['--help']); "
        "heavy = [m for m in ('torch', 'cloudvolume', 'neuroglancer', 'h5py', 'zarr', "
        "'tifffile', 'tensorstore', 'numpy') if m in sys.modules]; print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_console_script_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [CHUNKFLOW, "read-h5", "-f", "missing.h5"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "chunkflow: error: read-h5: missing.h5: no such file (expected an HDF5 file)"
    )
    verbose = subprocess.run(
        [CHUNKFLOW, "-v", "read-h5", "-f", "missing.h5"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_python_dash_m(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "chunkflow", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_unknown_operator_and_option(run_cli):
    line = error_line(run_cli("read-hdf5 -f x.h5", expect=2))
    assert "read-hdf5" in line
    line = error_line(run_cli("create-chunk --sizes 1 2 3", expect=2))
    assert "create-chunk" in line and "--sizes" in line


def test_aliases_run_the_same_operator(run_cli, tmp_path):
    run_cli("create-chunk -s 2 3 4 save-h5 -f a.h5 load-h5 -f a.h5 -o b write-h5 -i b -f b.h5")
    assert (tmp_path / "a.h5").exists() and (tmp_path / "b.h5").exists()


def _write_recorder(tmp_path):
    plugin = tmp_path / "record.py"
    plugin.write_text(
        "def execute(chunk, tag, log):\n"
        "    with open(log, 'a') as f:\n"
        "        f.write(f'{tag} {chunk.voxel_offset.x}\\n')\n"
    )
    return plugin


def test_tasks_stream_one_at_a_time(run_cli, tmp_path):
    _write_recorder(tmp_path)
    run_cli(
        "generate-tasks -s 0 0 0 -z 2 2 6 -c 2 2 2 create-chunk "
        "plugin -f record.py -i chunk -a 'tag=a;log=events.txt' "
        "plugin -f record.py -i chunk -a 'tag=b;log=events.txt'"
    )
    events = (tmp_path / "events.txt").read_text().split("\n")[:-1]
    assert events == ["a 0", "b 0", "a 2", "b 2", "a 4", "b 4"]


def test_skipped_tasks_reach_finalizers_only(run_cli, tmp_path):
    (tmp_path / "done").mkdir()
    run_cli(
        "generate-tasks -s 0 0 0 -z 2 2 4 -c 2 2 2 create-chunk --pattern zero "
        "skip-all-zero write-h5 -f out/ mark-complete -p done/ -s .done"
    )
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tmp_path / "done")) == ["0-2_0-2_0-2.done", "0-2_0-2_2-4.done"]


def test_skip_to_resumes_at_the_named_operator(run_cli, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run_cli(
        "create-bbox -s 0 0 0 -z 2 2 2 create-chunk --pattern zero "
        "skip-all-zero --skip-to final write-h5 -f a/ write-h5 --name final -f b/"
    )
    assert os.listdir(tmp_path / "a") == []
    assert os.listdir(tmp_path / "b") == ["0-2_0-2_0-2.h5"]


def test_finalizer_is_a_property_of_the_stage():
    ran = []
    skipped = Task()
    skipped.skip("test")
    compute = Stage("compute", "map", lambda t: ran.append("compute"))
    final = Stage("final", "finalizer", lambda t: ran.append("final"))
    out = list(final(compute(iter([skipped, Task()]))))
    assert ran == ["final", "compute", "final"]
    assert len(out) == 2 and out[0].skipped


def test_the_command_line_is_parsed_into_a_pipeline_and_run(run_cli, tmp_path, monkeypatch):
    from chunkflow.pipeline import Pipeline

    parsed = []
    run = Pipeline.run

    def recording(pipeline, tasks=None, config=None):
        parsed.append([(o.name, o.kind, o.effects, o.inputs) for o in pipeline.operators])
        return run(pipeline, tasks, config)

    monkeypatch.setattr(Pipeline, "run", recording)
    run_cli("create-chunk -s 2 2 2 -o img write-h5 -i img -f a.h5 mark-complete -p done-")
    assert parsed == [
        [
            ("create-chunk", "map", (), ()),
            ("write-h5", "map", ("writes",), ("img",)),
            ("mark-complete", "finalizer", ("writes",), ()),
        ]
    ]
    assert (tmp_path / "a.h5").exists()


def test_command_line_operators_run_from_python(run_cli, tmp_path, monkeypatch):
    from chunkflow.cli.main import command_operator
    from chunkflow.io.h5 import read_h5
    from chunkflow.pipeline import Pipeline

    monkeypatch.chdir(tmp_path)
    pipeline = Pipeline(
        [
            command_operator(
                "generate-tasks", roi_start=(0, 0, 0), roi_stop=(2, 4, 8), chunk_size=(2, 4, 4)
            ),
            command_operator("create-chunk", voxel_size=(4, 2, 2), output_chunk_name="img"),
            command_operator("threshold", input_chunk_name="img", output_chunk_name="fg"),
            command_operator("save-h5", input_chunk_name="fg", file_name="py/", name="save"),
        ]
    )
    plan = Pipeline(
        [
            command_operator(
                "generate-tasks",
                roi_start=(0, 0, 0),
                roi_stop=(2, 4, 8),
                chunk_size=(2, 4, 4),
                file_path="tasks.npy",
            )
        ]
    )
    for chain in (pipeline, plan):  # the run's options reach every operator
        chain.run(config=RunConfig(dry_run=True))
    assert os.listdir(tmp_path) == []
    (tmp_path / "py").mkdir()
    (tmp_path / "cli").mkdir()
    assert pipeline.run().count == 2 and plan.run().count == 0  # a sink: no task out
    assert (tmp_path / "tasks.npy").exists()
    run_cli(
        "generate-tasks -s 0 0 0 -r 2 4 8 -c 2 4 4 create-chunk --voxel-size 4 2 2 -o img "
        "threshold -i img -o fg write-h5 -i fg -f cli/"
    )
    files = sorted(os.listdir(tmp_path / "cli"))
    assert files == sorted(os.listdir(tmp_path / "py")) == ["0-2_0-4_0-4.h5", "0-2_0-4_4-8.h5"]
    for name in files:
        python, line = read_h5(str(tmp_path / "py" / name)), read_h5(str(tmp_path / "cli" / name))
        assert python.voxel_size == line.voxel_size == (4, 2, 2)
        assert (python.array == line.array).all() and python.bbox == line.bbox


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("read-hdf5", {}, "no operator named 'read-hdf5'"),
        ("create-chunk", {"sise": 1}, "create-chunk: no option sise; it takes dtype, "),
        ("create-chunk", {"size": (0, 1, 1)}, "expected three positive integers, got 0 1 1"),
        ("write-h5", {}, "write-h5: Missing option '-f' / '--file-name'"),
    ],
)
def test_command_line_operators_from_python_check_their_options(name, options, message):
    from chunkflow.cli.main import command_operator
    from chunkflow.errors import ChunkflowError

    with pytest.raises(ChunkflowError, match=re.escape(message)):
        command_operator(name, **options)


def test_repeated_operators_keep_separate_timers(run_cli, tmp_path):
    run_cli("--log-file run.log create-chunk -s 2 2 2 write-h5 -f a.h5 write-h5 -f b.h5")
    log = (tmp_path / "run.log").read_text()
    assert "write-h5 " in log and "write-h5#2 " in log


def test_dry_run_writes_nothing(run_cli, tmp_path):
    run_cli(
        "--dry-run create-bbox -s 0 0 0 -z 2 2 2 create-chunk write-h5 -f a.h5 "
        "write-tif -f a.tif save-npy -f a.npy save-zarr -f a.zarr save -v vol "
        "create-info -v info --volume-size 4 4 4 mark-complete -p m_"
    )
    assert os.listdir(tmp_path) == []


def test_dry_run_holds_back_finalizers_of_skipped_tasks(run_cli, tmp_path):
    (tmp_path / "done").mkdir()
    line = "create-chunk -s 2 2 2 --pattern zero skip-all-zero mark-complete -p done/"
    err = run_cli(f"--dry-run {line}").err
    assert "skipped (chunk is all zero)" in err and "mark-complete: dry run" in err
    assert os.listdir(tmp_path / "done") == []
    run_cli(line)  # without --dry-run the finalizer runs for the skipped task
    assert os.listdir(tmp_path / "done") == ["0-2_0-2_0-2"]


def test_log_levels(run_cli, tmp_path):
    assert "INFO" in run_cli("create-chunk -s 2 2 2").err
    assert run_cli("-q create-chunk -s 2 2 2").err == ""
    assert "DEBUG" in run_cli("--log-level debug create-chunk -s 2 2 2").err


def test_module_loggers_follow_the_command_line_level(run_cli, tmp_path):
    """Each module logs under its own name; the CLI configures their parent, `chunkflow`."""
    import logging

    from chunkflow.image import thumbnail

    assert thumbnail.logger.name == "chunkflow.image.thumbnail"
    caught = []
    handler = logging.Handler()
    handler.emit = caught.append
    logging.getLogger().addHandler(handler)  # nothing passes the `chunkflow` logger upwards
    line = "create-chunk -s 4 32 32 -t float32 save -v {} --create-thumbnail --thumbnail-mip 1"
    try:
        err = run_cli(f"--log-file {tmp_path / 'log'} " + line.format(tmp_path / "a")).err
        quiet = run_cli("-q " + line.format(tmp_path / "b")).err
    finally:
        logging.getLogger().removeHandler(handler)
    said = "INFO    thumbnail: created the layer"
    assert said in err and said in (tmp_path / "log").read_text()
    assert quiet == "" and caught == []


def test_unexpected_failure_is_one_line_with_hint(run_cli, tmp_path):
    (tmp_path / "boom.py").write_text("def execute(chunk):\n    raise RuntimeError('kaboom')\n")
    result = run_cli("create-chunk -s 2 2 2 plugin -f boom.py -i chunk", expect=1)
    line = error_line(result)
    assert "plugin" in line and "RuntimeError: kaboom" in line and "--verbose" in line


def test_error_names_operator_and_task_bbox(run_cli):
    line = error_line(run_cli("create-bbox -s 0 0 0 -z 2 2 2 crop-margin -i image", expect=1))
    assert line == (
        "chunkflow: error: crop-margin (task 0-2_0-2_0-2): no chunk named 'image' "
        "in the task (it holds: nothing)"
    )


@pytest.mark.parametrize(
    "args",
    [
        "create-bbox -s 0 0 0 -z 0 2 2",
        "create-bbox -s 0 0 0 -p 0 2 2",
        "create-chunk -s 2 -1 2",
        "generate-tasks -c 0 1 1 -z 2 2 2",
    ],
)
def test_zero_or_negative_sizes(run_cli, args):
    result = run_cli(args, expect=None)
    assert result.code != 0
    error_line(result)


def test_each_task_logs_one_line_with_bbox_and_operator_times(run_cli, tmp_path):
    err = run_cli("generate-tasks -c 2 4 4 -g 1 1 3 create-chunk -s 2 4 4 threshold").err
    lines = [line for line in err.splitlines() if " INFO    task " in line]
    assert [line.split("task ")[1].split(":")[0] for line in lines] == [
        "0-2_0-4_0-4",
        "0-2_0-4_4-8",
        "0-2_0-4_8-12",
    ]
    assert all("create-chunk " in line and "threshold " in line for line in lines)


def test_run_ends_with_a_timing_table(run_cli, tmp_path):
    run_cli(
        "--log-file run.log generate-tasks -c 2 4 4 -g 1 1 3 create-chunk -s 2 4 4 "
        "threshold write-h5 -f out.h5"
    )
    log = (tmp_path / "run.log").read_text().splitlines()
    start = next(k for k, line in enumerate(log) if "3 tasks; time per operator:" in line)
    header, *rows = log[start + 1 : start + 8]
    assert header.split() == ["operator", "calls", "total", "s", "mean", "s", "%", "of", "wall"]
    table = {row.split()[0]: row.split()[1:] for row in rows if not row.startswith("-")}
    assert set(table) == {"generate-tasks", "create-chunk", "threshold", "write-h5", "(wall"}
    for name in ("generate-tasks", "create-chunk", "threshold", "write-h5"):
        calls, total, mean, share = table[name]
        assert calls == "3" and float(total) == pytest.approx(3 * float(mean), abs=1e-3)
        assert 0 <= float(share) <= 100
    totals = [float(table[name][1]) for name in table if name != "(wall"]
    assert totals == sorted(totals, reverse=True)  # slowest first
    assert float(table["(wall"][-2]) >= max(totals)


def _stderr_through_a_terminal(args: list[str], tmp_path, env=None) -> str:
    """Run the console script with stderr on a pseudo terminal; return what it drew there."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns
    proc = subprocess.Popen(
        [CHUNKFLOW, *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process exits
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bars_only_on_a_terminal_and_not_quiet(tmp_path, quiet):
    args = ["generate-tasks", "-c", "1", "4", "4", "-g", "1", "1", "40", "create-chunk"]
    args += ["-s", "1", "4", "4", "threshold"]
    env = {"CHUNKFLOW_PROGRESS": None}
    drawn = _stderr_through_a_terminal((["-q"] if quiet else []) + args, tmp_path, env)
    if quiet:
        assert drawn == ""
    else:
        assert "tasks:   0%" in drawn and "0/40" in drawn
    piped = subprocess.run(
        [CHUNKFLOW, *args], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "tasks:   0%" not in piped.stderr and "%|" not in piped.stderr


# Credentials in URLs never reach stderr, the log file or a dead letter -----------------------

SECRETS = ("s3cr3t-pw", "t0ken-value", "51gnature")


@pytest.fixture
def refused_port():
    """A loopback port that nothing listens on while the test runs (bound, not listening)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def not_found_server():
    """A loopback HTTP server answering 404 to everything; its port."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def _secret_url(port: int, path: str = "", user: bool = True) -> str:
    userinfo = f"user:{SECRETS[0]}@" if user else ""
    return (
        f"http://{userinfo}127.0.0.1:{port}/{path}"
        f"?token={SECRETS[1]}&X-Amz-Signature={SECRETS[2]}&X-Amz-Expires=60"
    )


@pytest.fixture
def dummy_aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_METADATA_SERVICE_TIMEOUT": "1",
        "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize(
    "line",
    [
        "queue-status -q sqs://q --endpoint-url {sqs}",
        "fetch-task -q sqs://q --endpoint-url {sqs} create-chunk",
        "generate-tasks --roi-start 0 0 0 --roi-size 1 1 1 -c 1 1 1 -q q --endpoint-url {sqs}",
        "create-chunk cloud-watch --endpoint-url {sqs}",
        "cutout -v {volume} --start 0 0 0 --size 1 1 1",
        "neuroglancer --layer v={volume} --serve-seconds 0",
    ],
)
def test_no_credential_of_a_url_is_printed_or_logged(
    run_cli, tmp_path, dummy_aws, refused_port, not_found_server, line, verbose
):
    # (cloud-volume reads http://user:password@host as the host `user`: no user there)
    volume = _secret_url(not_found_server, "vol", user=False)
    with_user = "{sqs}" in line
    line = line.format(sqs=_secret_url(refused_port), volume=volume)
    log = tmp_path / "run.log"
    result = run_cli(["-v"] * verbose + ["--log-file", log, *line.split()], expect=1)
    printed = result.out + result.err + log.read_text()
    assert not [secret for secret in SECRETS if secret in printed], printed
    last = result.err.splitlines()[-1]
    assert last.startswith("chunkflow: error: ")
    # the URL is still named, without its secrets
    assert "?token=***&X-Amz-Signature=***&X-Amz-Expires=60" in last
    assert ("***@127.0.0.1" in last) == with_user
    assert ("Traceback" in result.err) == verbose


def test_no_credential_reaches_a_dead_letter_or_the_console_script(tmp_path, not_found_server):
    volume = _secret_url(not_found_server, "vol", user=False)
    run = [CHUNKFLOW, "-v"]
    subprocess.run(
        [*run, "generate-tasks", "--roi-start", "0", "0", "0", "--roi-size", "1", "1", "1"]
        + ["-c", "1", "1", "1", "-q", "./q"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    worker = subprocess.run(
        [*run, "fetch-task", "-q", "./q", "--max-retries", "0", "--wait-seconds", "0"]
        + ["--retry-times", "0", "cutout", "-v", volume, "delete-task-in-queue"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert worker.returncode == 1 and "1 dead-lettered" in worker.stderr
    (dead,) = (tmp_path / "q" / "dead").glob("*.error")
    for text in (worker.stdout, worker.stderr, dead.read_text()):
        assert not [secret for secret in SECRETS if secret in text], text
    assert "?token=***&X-Amz-Signature=***" in dead.read_text()

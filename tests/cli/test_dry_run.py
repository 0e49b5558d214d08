"""`chunkflow --dry-run` over every operator: a dry run changes nothing.

Each operator has a place in one of the command lines of CHAINS, over small inputs in a shared
workspace (volumes in HDF5, TIFF, NumPy, zarr and precomputed, a local queue, a task file, task
logs, a model file, a whole-volume segmentation job). Every chain runs with `--dry-run` and the
workspace (every path, size, mtime and content) must be the same afterwards, and every
operator with side effects must say that it did not act. Without `--dry-run` the same chains do
change what CHANGES lists (and cloud-watch sends metrics), so the dry runs prove something; every
kind of side effect is among them. An operator missing from CHAINS fails the test: a new
operator gets a place there (or in NOT_RUN, with the reason).

fetch-task-from-sqs takes SQS queues only: its chain runs against moto's in-process SQS.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import sys

import pytest

from chunkflow.cli.framework import EFFECTS, EFFECTS_OF, OPERATORS
from chunkflow.cli.main import main
from tests.queues.moto import AWS_SCRUB, DUMMY_AWS
from tests.training.synthetic import cells, write_tiny_model

BOX = "0-8_0-32_0-32"
WHOLE = "--start 0 0 0 --size 8 32 32"
FAST_TRAIN = (
    "--iterations 1 -b 1 --num-workers 0 --num-threads 1 --patch-size 4 16 16 --device cpu "
    "--checkpoint-interval 1 --snapshot-interval 1 --profile-interval 0 --no-elastic-augment"
)

# Each chain: (operator, its options) in command-line order. Paths are relative to the
# workspace that `workspace` builds.
CHAINS: dict[str, list[tuple[str, str]]] = {
    "files": [
        ("random-location", f"-r {BOX} -s 8 32 32 --seed 1"),  # one task, at BOX
        ("create-bbox", f"-b {BOX}"),
        ("read-h5", "-f image.h5 -o image"),
        ("pad", "-i image -o padded --margin 1 2 2 --mode reflect"),
        ("read-tif", "-f image.tif -o tif"),
        ("load-npy", f"-f {BOX}.npy -o npy"),
        ("load-zarr", "-f image.zarr -d image -o zarr"),
        ("write-h5", "-i image -f out.h5"),
        ("write-tif", "-i tif -f out.tif"),
        ("save-npy", "-i npy -f out.npy"),
        ("save-zarr", "-i zarr -f image.zarr -d copy"),
        ("copy-var", "-i image -o image2"),
        ("delete-chunk", "-i image2"),
        ("crop-margin", "-i image -o cropped -m 1 1 1"),
        ("skip-none", "-i image"),
        ("skip-all-zero", "-i image"),
        ("skip-task-by-file", "-p done- -m exist"),
        ("plugin", "-f plug.py -i image -o plugged"),
        ("normalize-section-contrast", "-i image -o contrast"),
        ("normalize-intensity", "-i image -o float"),
        ("gaussian-filter", "-i float -o smooth"),
        ("quantize", "-i smooth -o quantized"),
        ("downsample", "-i image -o small"),
        ("create-chunk", "-s 8 32 32 -c 3 -t float32 -o maps"),
        ("channel-voting", "-i maps -o votes"),
        ("mark-complete", "-p done-"),
        ("save-log", "-l logs"),
    ],
    "precomputed": [
        ("cutout", f"-v img {WHOLE} -o image"),
        ("mask", "-i image -v seg -o masked"),
        ("save", "-i image -v img --upload-log --create-thumbnail --thumbnail-mip 1"),
        ("downsample-upload", "-i image -v img --start-mip 1 --stop-mip 2"),
        ("create-info", "-v newvol -z 8 32 32"),
    ],
    "segmentation": [
        ("read-h5", "-f image.h5 -o image"),
        (
            "inference",
            "-i image -o affs --framework pytorch -m tiny.py -s 4 16 16 -v 0 0 0 -c 3 "
            "--device cpu --num-threads 1",
        ),
        ("agglomerate", "-i affs -o agglomerated --threshold 0.5"),
        ("watershed", "-i affs -o fragments"),
        ("threshold", "-i image -t 100 -o foreground"),
        ("connected-components", "-i foreground -o components"),
        ("read-h5", "-f labels.h5 -o gt"),
        ("mask-out-objects", "-i gt -o dusted -d 10"),
        ("remap", "-i dusted -o renumbered"),
        ("evaluate-segmentation", "-s components -g gt -o evaluation.json"),
    ],
    "mesh": [
        # 16 objects: mesh forks simplifying workers from 32 on, not wanted in a test process
        ("cutout", "-v seg --start 0 0 0 --size 8 32 16 -o seg"),
        ("mesh", "-i seg -o seg"),
        ("mesh-manifest", "-v seg"),
        ("mesh", "-i seg -o seg --format multires"),
        ("mesh-merge-sharded", "-v seg"),
        ("skeletonize", "-i seg -o seg -d 0"),
        ("skeleton-merge", "-v seg"),
    ],
    "training": [
        ("read-h5", "-f image.h5 -o image"),
        ("read-h5", "-f labels.h5 -o labels"),
        ("add-affinities", "-i labels -o affinities --pad edge"),
        ("grow-boundary", "-i labels -o grown --pad edge"),
        ("balance-labels", "-i affinities -o weights"),
        ("simple-augment", "-i image,labels -o image_s,labels_s --seed 1"),
        ("elastic-augment", "-i image,labels -o image_e,labels_e --seed 1 --pad reflect"),
        ("intensity-augment", "-i image -o image_i --seed 1"),
        ("noise-augment", "-i image_i -o image_n --seed 1"),
        ("defect-augment", "-i image_n -o image_d --seed 1"),
        ("normalize", "-i image_d -o image_f"),
        ("train", f"-m tiny.py -c ckpt {FAST_TRAIN}"),
    ],
    "worker": [
        ("fetch-task", "-q ./queue --lease-wait 0 -r 0 -w 0"),
        ("create-chunk", "-o chunk"),
        ("write-h5", "-i chunk -f fetched-"),
        ("delete-task-in-queue", ""),
    ],
    "queue": [
        ("queue-status", "-q ./queue"),
        ("queue-purge", "-q ./queue"),
        (
            "generate-tasks",
            "--roi-start 0 0 0 --roi-stop 8 32 32 -c 8 16 16 -q ./new-queue -f new-tasks.npy",
        ),
    ],
    "task-file": [
        ("fetch-task-from-file", "-f tasks.npy -i 0 -n 2"),
        ("log-summary", "-l logs"),
    ],
    "setup-env": [
        (
            "setup-env",
            "--volume-start 0 0 0 --volume-size 8 32 32 -l env-out -z 4 16 16 -x 1 "
            "--thumbnail -b 1 -q ./env-queue -f env-tasks.npy",
        ),
    ],
    "blockwise": [
        ("segment-setup", "--mode cc -i seg -o new-job -c 8 32 32"),
        ("create-bbox", f"-b {BOX}"),  # the job's one task
        ("segment-fragments", "-o job"),
        ("segment-edges", "-o job"),
        ("segment-merge", "-o job"),
        ("segment-relabel", "-o job"),
        ("segment-status", "-o finished-job"),  # fails unless the job is finished
    ],
    "metrics": [
        ("create-bbox", f"-b {BOX}"),
        ("create-chunk", ""),
        ("cloud-watch", ""),
    ],
    "sqs": [
        ("fetch-task-from-sqs", "-q sqs://dry-run --lease-wait 0 -r 0 -w 0"),
        ("create-chunk", ""),
        ("delete-task-in-queue", ""),
    ],
}

# Operators that serve until stopped, so they cannot run here; they write nothing anywhere.
NOT_RUN = {
    "neuroglancer": "serves a neuroglancer viewer until --serve-seconds pass or Ctrl-C",
    "view": "serves a microviewer until --serve-seconds pass or Ctrl-C",
}

# What each chain changes when it runs without --dry-run: paths (or something under them).
CHANGES = {
    "files": ("out.h5", "out.tif", "out.npy", "image.zarr/copy", f"done-{BOX}", "logs"),
    "precomputed": ("img/1_1_1", "img/2_2_1", "img/log", "img/thumbnail", "newvol/info"),
    "segmentation": ("evaluation.json",),
    "mesh": ("seg/mesh", "seg/skeletons"),
    "training": ("ckpt/model.pt", "ckpt/snapshots"),
    "worker": ("queue/pending", "fetched-0-8_0-16_0-16.h5"),
    "queue": ("queue/pending", "new-queue/pending", "new-tasks.npy"),
    "setup-env": ("env-out/info", "env-out/thumbnail", "env-queue/pending", "env-tasks.npy"),
    "blockwise": ("new-job/info", "job/blockwise", "job/1_1_1"),
    "metrics": (),  # sent to CloudWatch: see `cloudwatch`
}

# Builds the workspace, after the files that `workspace` writes itself.
SETUP = [
    f"read-h5 -f image.h5 -o image read-h5 -f labels.h5 -o labels "
    f"write-tif -i image -f image.tif save-npy -i image -f {BOX}.npy "
    "save-zarr -i image -f image.zarr -d image save -i image -v img -b 8 16 16 "
    "save -i labels -v seg -b 8 16 16",
    "generate-tasks --roi-start 0 0 0 --roi-stop 8 32 32 -c 8 16 16 -q ./queue",
    "generate-tasks --roi-start 0 0 0 --roi-stop 8 32 32 -c 8 16 16 -f tasks.npy",
    "generate-tasks --roi-start 0 0 0 --roi-stop 8 32 32 -c 8 16 16 create-chunk save-log -l logs",
    "segment-setup --mode cc -i seg -o job -c 8 32 32",
    "segment-setup --mode cc -i seg -o finished-job -c 8 32 32",
    "generate-tasks -v finished-job -c 8 32 32 segment-fragments -o finished-job "
    "segment-edges -o finished-job segment-merge -o finished-job segment-relabel -o finished-job",
]

PLUGIN = "def execute(chunk):\n    return chunk\n"


def command(chain: str) -> str:
    return " ".join(f"{op} {options}".strip() for op, options in CHAINS[chain])


def chunkflow(args: str) -> int:
    return main(shlex.split(args))


def snapshot(root) -> dict[str, tuple]:
    """Every path under root (the root too): kind, size, mtime and a hash of the content."""
    state = {".": ("dir", os.lstat(root).st_mtime_ns)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            key = os.path.relpath(path, root)
            if stat.S_ISDIR(info.st_mode):
                state[key] = ("dir", info.st_mtime_ns)
            elif stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                state[key] = ("file", info.st_size, info.st_mtime_ns, digest)
            else:
                state[key] = ("other", info.st_mode, info.st_mtime_ns)
    return state


def changes(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def no_credentials(monkeypatch, tmp_path):
    """No AWS credentials at all: a dry run must not need them."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name in AWS_SCRUB:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "1")
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "1")


def dummy_credentials(monkeypatch, tmp_path):
    no_credentials(monkeypatch, tmp_path)
    for name, value in DUMMY_AWS.items():
        monkeypatch.setenv(name, value)


def build_workspace(root):
    """The inputs of every chain, in folder root."""
    from chunkflow.io.h5 import write_h5

    sample = cells((8, 32, 32))
    write_h5(sample["image"], str(root / "image.h5"))
    write_h5(sample["label"], str(root / "labels.h5"))
    write_tiny_model(root / "tiny.py")
    (root / "plug.py").write_text(PLUGIN)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for line in SETUP:
            assert chunkflow(line) == 0, line
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One workspace for all the dry runs, which leave it as it is."""
    return build_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture
def cloudwatch(monkeypatch):
    """The metrics cloud-watch sends, caught before they leave the process."""
    sent = []

    class Client:
        def put_metric_data(self, Namespace, MetricData):
            sent.extend(MetricData)

    monkeypatch.setattr("chunkflow.logs.cloudwatch_client", lambda *args: Client())
    return sent


def test_every_operator_has_a_dry_run_chain():
    placed = {op for chain in CHAINS.values() for op, _ in chain}
    missing = set(OPERATORS) - placed - set(NOT_RUN)
    assert not missing, f"give these operators a place in CHAINS: {sorted(missing)}"
    assert placed <= set(OPERATORS), placed - set(OPERATORS)
    assert not placed & set(NOT_RUN)


def test_effects_are_declared_from_the_vocabulary():
    for name, (effects, dry_run) in EFFECTS_OF.items():
        assert set(effects) <= set(EFFECTS), name
        assert dry_run in ("skip", "self"), name
        assert effects or dry_run == "skip", name
    for name in NOT_RUN:
        assert EFFECTS_OF[name] == ((), "skip"), f"{name} declares side effects"


def effects_of(chain: str) -> set[str]:
    return {effect for op, _ in CHAINS[chain] for effect in EFFECTS_OF[op][0]}


def test_every_kind_of_side_effect_is_exercised():
    assert set().union(*(effects_of(c) for c in CHANGES)) == set(EFFECTS)
    for chain in CHAINS:
        if chain != "sqs" and effects_of(chain) - {"metrics"}:
            assert CHANGES[chain], f"say what chain {chain!r} changes when it runs for real"


@pytest.mark.parametrize("chain", [c for c in CHAINS if c != "sqs"])
def test_dry_run_changes_nothing(chain, workspace, run_cli, monkeypatch, tmp_path, cloudwatch):
    no_credentials(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as without PYTHONDONTWRITEBYTECODE
    monkeypatch.chdir(workspace)
    before = snapshot(workspace)
    result = run_cli(f"--dry-run {command(chain)}")
    assert changes(before, snapshot(workspace)) == []
    assert cloudwatch == []
    for op, _ in CHAINS[chain]:  # each one was reached, and said what it did not do
        assert not EFFECTS_OF[op][0] or f"{op}: dry run" in result.err, op


def test_dry_run_reads_sqs_without_leasing(run_cli, monkeypatch, tmp_path):
    moto = pytest.importorskip("moto")
    dummy_credentials(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    with moto.mock_aws():
        import boto3

        run_cli("generate-tasks --roi-start 0 0 0 --roi-stop 8 32 32 -c 8 16 16 -q sqs://dry-run")
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName="dry-run")["QueueUrl"]

        def counts():
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]

        waiting = {"ApproximateNumberOfMessages": "4", "ApproximateNumberOfMessagesNotVisible": "0"}
        assert counts() == waiting
        files = snapshot(tmp_path)
        result = run_cli(f"--dry-run {command('sqs')}")
        assert "cannot be read without leasing them, so no task is fetched" in result.err
        assert counts() == waiting
        assert changes(files, snapshot(tmp_path)) == []
        run_cli(command("sqs"))  # without --dry-run the tasks are leased and deleted
        assert counts()["ApproximateNumberOfMessages"] == "0"


@pytest.mark.parametrize("chain", list(CHANGES))
def test_without_dry_run_the_chain_acts(chain, run_cli, monkeypatch, tmp_path, cloudwatch):
    """Run for real (in a workspace of its own), the chains have their side effects: so the
    dry runs above, which change nothing, prove something."""
    dummy_credentials(monkeypatch, tmp_path)
    live = build_workspace(tmp_path)
    monkeypatch.chdir(live)
    before = snapshot(live)
    run_cli(command(chain))
    changed = changes(before, snapshot(live))
    for path in CHANGES[chain]:
        assert any(c == path or c.startswith(path + "/") for c in changed), (path, changed)
    assert bool(cloudwatch) == ("metrics" in effects_of(chain))

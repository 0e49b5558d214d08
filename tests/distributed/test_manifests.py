"""The Kubernetes manifests: what a cluster admin checks before admitting them.

Both run the workers unprivileged with resource requests; the Job ends when the queue is
drained and succeeds only when nothing is dead; both forward SIGTERM to the workers so they
release their tasks. (Their chunkflow command lines are parsed by tests/test_command_lines.py.)
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO

MANIFESTS = ["job.yml", "deploy.yml"]


def load(name: str) -> dict:
    [document] = list(yaml.safe_load_all((REPO / "distributed" / "kubernetes" / name).read_text()))
    return document


@pytest.mark.parametrize("name", MANIFESTS)
def test_workers_run_unprivileged_with_requests(name):
    pod = load(name)["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        requests = container["resources"]["requests"]
        assert {"cpu", "memory", "nvidia.com/gpu"} <= set(requests)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == requests["nvidia.com/gpu"]
        env = {e["name"]: e["value"] for e in container["env"]}
        for mount in container["volumeMounts"]:  # secrets under the user's home, not /root
            assert not mount["mountPath"].startswith("/root")
        assert env["HOME"] == "/home/chunkflow"
        script = container["args"][0]
        assert "trap 'kill -TERM" in script  # SIGTERM reaches every worker
        assert "delete-task-in-queue" in script


def test_job_ends_when_the_queue_is_drained():
    job = load("job.yml")
    assert job["kind"] == "Job"
    spec = job["spec"]
    assert spec["parallelism"] >= 1 and "completions" not in spec  # the work-queue pattern
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    ignored = spec["podFailurePolicy"]["rules"][0]
    assert ignored["action"] == "Ignore"
    assert ignored["onPodConditions"] == [{"type": "DisruptionTarget"}]
    script = spec["template"]["spec"]["containers"][0]["args"][0]
    assert "sleep infinity" not in script  # the pod ends, releasing its GPU
    assert script.rstrip().endswith('chunkflow queue-status -q "$QUEUE_NAME" --check')


def test_the_images_run_as_the_manifests_user():
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        text = (REPO / "docker" / dockerfile).read_text()
        assert "useradd --uid 1000" in text and "\nUSER 1000\n" in text

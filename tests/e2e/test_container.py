"""The image as it really runs (issue 17): PID 1, handoff, healthcheck, lint, manifests.

There is no container engine on the test machines, so the PID-1 test reads the
Dockerfile's ENTRYPOINT and CMD and runs exactly that command line on the host, with the
project's virtualenv on PATH and tini from Debian's package, as PID 1 of a fresh PID
namespace (``unshare --pid --fork --mount-proc``, which needs root). Its HEALTHCHECK
command runs inside the same namespace (``nsenter``), as the engine would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from rq.worker import Worker

from runner import fairness
from runner.events import MessageEvent, Status, StatusEvent
from runner.store import RunStore
from tests.helpers import debian_package, start, step_script, wait_for, write_script

if TYPE_CHECKING:
    from tests.conftest import Cli, Server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the project's virtualenv


@dataclass
class Image:
    """What the final stage of the Dockerfile says about how the image runs."""

    stages: list[list[tuple[str, str]]]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    user: str
    env: dict[str, str]


def read_dockerfile() -> Image:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    stages: list[list[tuple[str, str]]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if item["instruction"] != "COMMENT" and stages:
            stages[-1].append((item["instruction"], item["value"]))
    final = dict(stages[-1])  # the last of each instruction in the final stage wins
    health = final["HEALTHCHECK"]
    assert " CMD " in f" {health}", "HEALTHCHECK must have a CMD"
    return Image(
        stages=stages,
        entrypoint=json.loads(final["ENTRYPOINT"]),
        cmd=json.loads(final.get("CMD", "[]")),
        healthcheck=json.loads(health.split(" CMD ", 1)[1]),
        user=final.get("USER", "root"),
        env=dict(parser.envs),
    )


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    image = read_dockerfile()
    assert len(image.stages) >= 2
    runs = " ".join(v for stage in image.stages for i, v in stage if i == "RUN")
    assert "--require-hashes --requirement requirements.lock" in runs
    assert image.user not in ("root", "0", "0:0")
    assert image.entrypoint[:2] == ["/usr/bin/tini", "--"]
    assert image.healthcheck == ["runner", "worker", "--health"]
    assert image.env["RUNNER_HEALTH_FILE"]
    lock = (ROOT / "requirements.lock").read_text()
    pins = [line for line in lock.splitlines() if "==" in line and not line.startswith("#")]
    assert pins and all("--hash=sha256:" in lock.split(p, 1)[1].split("\n", 2)[1] for p in pins)
    for name in ("redis", "rq", "pydantic", "openai", "starlette", "setuptools"):
        assert f"\n{name}==" in lock, f"{name} is not pinned in requirements.lock"


def test_hadolint_passes() -> None:
    done = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_manifests_validate() -> None:
    """kubernetes-validate --strict on every manifest; KEDA's ScaledObject (a custom
    resource it has no schema for) is checked against the Deployment and RQ's keys."""
    files = sorted((ROOT / "ops" / "k8s").glob("*.yaml"))
    done = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    builtin = [d for d in docs if "keda.sh" not in d["apiVersion"]]
    for doc in builtin:
        name = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        assert f"passed for resource {name}" in done.stdout, done.stdout
    (scaled,) = [d for d in docs if d["kind"] == "ScaledObject"]
    deployments = {d["metadata"]["name"] for d in builtin if d["kind"] == "Deployment"}
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    lists = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]]
    assert lists == [f"rq:queue:{q}" for q in fairness.listen_order(["default"])]
    (worker,) = [d for d in builtin if d["metadata"]["name"] == "runner-worker"]
    probe = worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe["exec"]["command"] == read_dockerfile().healthcheck


def test_every_scraped_service_serves_metrics_on_the_scraped_port() -> None:
    """ops/prometheus.yml scrapes compose services and labelled pods on a port; each of
    them must set RUNNER_METRICS_PORT to it (metrics are off without it) and, in
    Kubernetes, expose it."""
    prom = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "ops" / "compose.yaml").read_text())["services"]
    k8s = [
        d for f in (ROOT / "ops" / "k8s").glob("*.yaml") for d in yaml.safe_load_all(f.read_text())
    ]
    for job in prom["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                service, port = target.split(":")
                assert compose[service]["environment"]["RUNNER_METRICS_PORT"] == port, target
        for rule in job.get("relabel_configs", []):
            if rule.get("action") != "keep":
                continue
            port = next(r for r in job["relabel_configs"] if "replacement" in r)["replacement"]
            port = port.rsplit(":", 1)[1]
            apps = rule["regex"].split("|")
            pods = [d for d in k8s if d and d["kind"] == "Deployment"]
            kept = [d for d in pods if d["spec"]["template"]["metadata"]["labels"]["app"] in apps]
            assert len(kept) == len(apps), apps
            for deployment in kept:
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                env = {e["name"]: e["value"] for e in container.get("env", [])}
                assert env.get("RUNNER_METRICS_PORT") == port, deployment["metadata"]["name"]
                exposed = {p["containerPort"] for p in container.get("ports", [])}
                assert int(port) in exposed, deployment["metadata"]["name"]


# ------------------------------------------------------------------------ PID 1


def _need_root_namespaces(tini: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root (CI runs as root)")
    why = debian_package("tini", Path(tini).exists)
    if why:
        pytest.skip(why)
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"PID namespaces are unavailable here: {probe.stderr.strip()}")


def _ns_pid(host_pid: int) -> list[int]:
    """The PIDs of a process, outermost namespace first (``NSpid``)."""
    for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(p) for p in line.split()[1:]]
    return []


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _started_on(store: RunStore, run_id: str) -> list[str]:
    return [
        e.worker or ""
        for e in store.events(run_id)
        if isinstance(e, StatusEvent) and e.status is Status.RUNNING
    ]


@pytest.mark.slow
def test_image_command_as_pid1_hands_off_on_sigterm(
    cli: Cli, env: dict[str, str], store: RunStore, server: Server, tmp_path: Path
) -> None:
    image = read_dockerfile()
    _need_root_namespaces(image.entrypoint[0])
    container_env = {
        **env,
        **{k: v for k, v in image.env.items() if k.startswith(("RUNNER_", "PYTHON"))},
        # The image's paths, moved under the test's own directories.
        "RUNNER_DATA_DIR": env["RUNNER_DATA_DIR"],
        "RUNNER_WORKSPACE_ROOT": env["RUNNER_WORKSPACE_ROOT"],
        "RUNNER_HEALTH_FILE": str(tmp_path / "worker.health"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RUNNER_SHUTDOWN_GRACE": "5",
    }
    grace = float(container_env["RUNNER_SHUTDOWN_GRACE"])
    command = ["unshare", "--pid", "--fork", "--mount-proc", *image.entrypoint, *image.cmd]
    box = start(command, container_env, tmp_path / "container.log")
    cli.procs.append(box)
    rq_conn = server.client(decode=False)
    wait_for(lambda: Worker.all(connection=rq_conn), timeout=60, what="the image's worker")
    (inner,) = Worker.all(connection=rq_conn)
    (tini,) = wait_for(lambda: _children(box.pid), what="PID 1 of the namespace")
    assert _ns_pid(tini)[-1] == 1, "tini is not PID 1 of its namespace"
    assert Path(f"/proc/{tini}/exe").resolve() == Path(image.entrypoint[0]).resolve()

    def healthcheck() -> subprocess.CompletedProcess[str]:
        inside = ["nsenter", "--target", str(tini), "--pid", "--mount", *image.healthcheck]
        return subprocess.run(
            inside, env=container_env, capture_output=True, text=True, timeout=60, check=False
        )

    wait_for(lambda: Path(container_env["RUNNER_HEALTH_FILE"]).exists(), what="health file")
    health = healthcheck()
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith(f"ok: worker {inner.name} is")

    steps = step_script(30, sleep=0.3)
    script = write_script(tmp_path / "turn.json", steps)
    run_id = cli.submit("--model", "scripted", "--script", str(script), "inside the box")
    wait_for(lambda: store.get(run_id).steps >= 2, timeout=60, what="the turn to get going")
    assert _started_on(store, run_id) == [inner.name]
    # The worker rewrites its health file every second while a turn runs.
    wait_for(lambda: "busy" in healthcheck().stdout, timeout=10, what="health to say busy")

    stopped = time.monotonic()
    os.kill(tini, signal.SIGTERM)
    code = box.wait(timeout=grace + 30)
    took = time.monotonic() - stopped
    print(f"container: PID 1 SIGTERM -> exit in {took:.2f} s (grace {grace:g} s)")
    assert code == 0, box.output()
    assert took < grace + 3, box.output()
    record = store.get(run_id)
    assert record.status is Status.QUEUED and record.reason.startswith("handoff"), record
    gone = subprocess.run(
        image.healthcheck,
        env=container_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gone.returncode == 1 and gone.stderr.startswith("error: no worker health"), gone

    cli.worker("after")
    wait_for(lambda: store.get(run_id).terminal, timeout=120, what="the turn to finish")
    assert store.get(run_id).status is Status.SUCCEEDED
    assert _started_on(store, run_id) == [inner.name, "after"]
    said = [
        e.content
        for e in store.events(run_id)
        if isinstance(e, MessageEvent) and e.role == "assistant"
    ]
    assert said == [s["content"] for s in steps], "a step was lost or repeated"

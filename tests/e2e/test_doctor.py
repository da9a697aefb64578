"""``runner doctor`` against a good setup and deliberately broken ones (issue 16.3)."""

from __future__ import annotations

import json
import socket

from tests.helpers import write_script


def lines(text: str, mark: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(mark)]


def test_a_good_setup_passes_every_check(cli, tmp_path) -> None:
    cli.worker("w1")
    done = cli("doctor", "--grace-period", "10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not lines(done.stdout, "✗"), done.stdout
    names = [line.split(":")[0].removeprefix("✓ ") for line in lines(done.stdout, "✓")]
    expected = ["server", "maxmemory-policy", "persistence", "clock", "scripts", "workers"]
    assert names == [*expected, "lease", "grace", "workspace", "model"]
    assert "valkey" in done.stdout
    report = json.loads(cli("doctor", "--grace-period", "10", "--json").stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"server", "scripts", "grace"}


def test_a_queue_with_runs_and_no_worker_fails(cli, tmp_path) -> None:
    script = write_script(tmp_path / "s.json", [{"content": "done"}])
    cli.submit("--model", "scripted", "--script", str(script), "--queue", "lonely", "hi")
    done = cli("doctor")
    assert done.returncode == 1
    (bad,) = lines(done.stdout, "✗")
    assert bad.startswith("✗ workers: queue lonely: 1 run(s) waiting, 0 live worker(s)")
    assert "fix: start one: runner worker --queue lonely" in done.stdout


def test_an_evicting_policy_fails(cli, server) -> None:
    server.client().config_set("maxmemory-policy", "allkeys-lru")
    done = cli("doctor")
    assert done.returncode == 1
    (bad,) = lines(done.stdout, "✗")
    assert bad.startswith("✗ maxmemory-policy: maxmemory-policy is allkeys-lru")
    assert "noeviction" in done.stdout


def test_no_persistence_fails(cli, server) -> None:
    client = server.client()
    client.config_set("appendonly", "no")
    client.config_set("save", "")
    done = cli("doctor", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["persistence"]
    assert "AOF" in failed[0]["fix"]


def test_a_lease_shorter_than_the_sweep_fails(cli, env) -> None:
    done = cli("doctor", env={**env, "RUNNER_LEASE_SECONDS": "1", "RUNNER_SWEEP_SECONDS": "2"})
    assert done.returncode == 1
    (bad,) = lines(done.stdout, "✗")
    assert bad == "✗ lease: lease 1 s is shorter than the sweep interval 2 s"


def test_a_grace_longer_than_the_platform_allows_fails(cli, env) -> None:
    done = cli("doctor", "--grace-period", "6")  # grace 3 s + 5 s margin > 6 s
    assert done.returncode == 1
    (bad,) = lines(done.stdout, "✗")
    assert bad.startswith("✗ grace: shutdown grace 3 s + 5 s margin is longer than")
    assert "RUNNER_SHUTDOWN_GRACE to 1 s" in done.stdout
    assert cli("doctor", "--grace-period", "8").returncode == 0


def test_the_provider_key_is_checked_and_never_shown(cli, env) -> None:
    openai = {k: v for k, v in env.items() if not k.startswith("OPENAI_")}
    openai["RUNNER_MODEL"] = "openai:gpt-4o-mini"
    missing = cli("doctor", env=openai)
    assert missing.returncode == 1
    assert lines(missing.stdout, "✗") == ["✗ model: openai:gpt-4o-mini: no key set"]
    secret = "sk-doctor-" + "x" * 32
    present = cli("doctor", env={**openai, "OPENAI_API_KEY": secret})
    assert present.returncode == 0, present.stdout
    assert "✓ model: openai:gpt-4o-mini: key present (OPENAI_API_KEY)" in present.stdout
    assert secret not in present.stdout + present.stderr


def test_an_unreachable_server_fails_every_server_check(cli, env) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = cli("doctor", env={**env, "RUNNER_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert done.returncode == 1
    bad = lines(done.stdout, "✗")
    assert bad[0].startswith("✗ server: cannot reach Redis")
    assert len(bad) == 6  # the server, the four checks that need it, and the redis store
    assert done.stderr == ""


def test_a_directory_store_is_probed_and_a_broken_one_fails(cli, env, tmp_path) -> None:
    good = tmp_path / "blobs"
    done = cli("doctor", env={**env, "RUNNER_WORKSPACE_STORE": good.as_uri()})
    assert done.returncode == 0, done.stdout
    assert f"✓ workspace: {good.as_uri()}: a probe blob was written, read and removed" in (
        done.stdout
    )
    assert [p for p in good.rglob("*") if p.is_file()] == []  # the probe is gone
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    bad_url = (blocked / "blobs").as_uri()
    done = cli("doctor", "--json", env={**env, "RUNNER_WORKSPACE_STORE": bad_url})
    assert done.returncode == 1
    (failed,) = [c for c in json.loads(done.stdout)["checks"] if not c["ok"]]
    assert failed["name"] == "workspace"
    assert failed["message"].startswith(f"{bad_url} is not writable")
    assert "RUNNER_WORKSPACE_STORE" in failed["fix"]

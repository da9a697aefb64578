"""``runner bench --quick --json`` end to end on the test's own server.

Benchmarks are not tests: nothing here looks at how fast anything was, only that every
section reports numbers and that the bench leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from runner.bench.main import SECTIONS
from tests.conftest import Server
from tests.helpers import RUNNER

# Four runs of a few sections each, so pytest-xdist can spread them (all at once take
# about two minutes); between them they cover every section.
GROUPS = (
    ("commit", "growth", "follow", "reattach", "memory"),
    ("throughput", "recovery", "live"),
    ("workspace", "fleet"),
    ("compaction", "sse"),
)
assert sorted(n for g in GROUPS for n in g) == sorted(SECTIONS)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("group", GROUPS, ids=["+".join(g[:2]) for g in GROUPS])
def test_bench_quick_json(env: dict[str, str], server: Server, group: tuple[str, ...]) -> None:
    picked = [arg for name in group for arg in ("--section", name)]
    done = subprocess.run(
        [*RUNNER, "bench", "--quick", "--json", *picked],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    ran = set(group) | ({"growth"} if {"reattach", "memory"} & set(group) else set())
    # progress went to stderr, not into the JSON
    assert f"[{len(ran)}/{len(ran)}]" in done.stderr

    assert report["quick"] is True
    assert set(report["sections"]) == ran
    for name in ran:
        figures = report["sections"][name]
        assert figures, name
        for fig in figures:
            for key in ("median", "p10", "p90", "value", "ratio"):
                assert _number(fig[key]), (name, fig["name"], key, fig[key])
            assert _number(fig["floor"]["median"]), (name, fig["name"])
            assert fig["n"] >= 1
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["python"] and machine["server"]
    assert report["settings"]["lease_seconds"] > 0

    leftovers = [k for k in server.client().scan_iter(count=1000) if "bench-" in k]
    assert leftovers == []
    assert not [m for m in server.client().smembers("rq:workers") if "bench-" in m]


def test_an_unknown_section_is_one_line(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*RUNNER, "bench", "--section", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: no such bench section: 'nope' (one of commit,")
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""

"""``runner bench | cat``: at 80 columns every cell of the report stays whole (issue 16.5)."""

from __future__ import annotations

import io

from rich.console import Console

from runner.bench.report import Report, render
from runner.bench.stats import Figure, Spread

NAMES = [
    ("commit of one step (1 KiB event, fenced Lua script)", "redis-py round trip (PING)"),
    ("follow latency, commit to follower (XREAD BLOCK)", "server round trip of XADD"),
]
GOALS = ["one round trip per step, under 2x the floor", "under 10 ms at p99"]


def report() -> Report:
    spread = Spread(median=0.0012, p10=0.001, p90=0.0016, p99=0.002, n=200)
    floor = Spread(median=0.0004, p10=0.0003, p90=0.0005, p99=0.0006, n=200)
    figures = [
        Figure(name=n, unit="s", value=spread, floor_name=f, floor=floor, goal=g)
        for (n, f), g in zip(NAMES, GOALS, strict=True)
    ]
    machine = {
        "nproc": 2,
        "cpu": "Some CPU",
        "python": "3.11",
        "server": "valkey 8",
        "server_url": "redis://127.0.0.1:1/0",
        "embedded": False,
        "persistence": "AOF",
        "load_average": [0.5],
    }
    bench = {"lease_seconds": 15.0, "sweep_seconds": 5.0, "shutdown_grace": 20.0}
    return Report(True, machine, bench, {"commit": figures}, 12.0)


def rendered(width: int) -> str:
    buffer = io.StringIO()
    # As the CLI's console writes to a pipe: not a terminal, 80 columns unless told.
    console = Console(file=buffer, width=width, highlight=False, soft_wrap=True)
    render(console, report())
    return buffer.getvalue()


def test_the_bench_report_keeps_whole_cells_at_80_columns() -> None:
    text = rendered(80)
    assert "…" not in text
    for (name, floor), goal in zip(NAMES, GOALS, strict=True):
        assert name in text
        assert floor in text
        assert goal in text
    assert "1.2 ms" in text and "1-1.6 ms" in text


def test_a_wide_terminal_still_gets_the_table() -> None:
    text = rendered(250)
    assert "…" not in text
    assert "floor value" in text  # the header row
    assert all(name in text for name, _ in NAMES)

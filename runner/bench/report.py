"""The bench's report: the machine it ran on, its figures, as a table or one JSON object."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from runner.bench.stats import Figure

TITLES = {
    "commit": "1 commit cost",
    "growth": "2 transcript growth",
    "follow": "3 follow latency",
    "reattach": "4 reattach",
    "throughput": "5 throughput",
    "recovery": "6 recovery",
    "memory": "7 memory",
    "live": "live output",
    "compaction": "compaction",
}


@dataclass
class Report:
    """Everything one ``runner bench`` measured, and where."""

    quick: bool
    machine: dict[str, Any]
    settings: dict[str, Any]
    sections: dict[str, list[Figure]]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "seconds": self.seconds,
            "machine": self.machine,
            "settings": self.settings,
            "sections": {k: [f.as_dict() for f in v] for k, v in self.sections.items()},
        }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _persistence(client: redis.Redis) -> str:
    """The server's AOF setting, which shows in the cost of every write."""
    try:
        conf: Any = client.config_get("append*")
    except redis.ResponseError:
        return "unknown"
    if conf.get("appendonly") != "yes":
        return "AOF off"
    return f"AOF, fsync {conf.get('appendfsync', '?')}"


def describe(client: redis.Redis, url: str, embedded: bool) -> dict[str, Any]:
    """The machine, the Python and the server the figures come from."""
    info: dict[str, Any] = client.info("server")
    name = info.get("server_name") or "redis"
    version = info.get("valkey_version") or info.get("redis_version") or "?"
    where = urlsplit(url)
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "server": f"{name} {version}",
        "server_url": f"{where.scheme}://{where.hostname}:{where.port}{where.path}",
        "embedded": embedded,
        "persistence": _persistence(client),
    }


def _scale(value: float, unit: str) -> tuple[float, str]:
    """A multiplier and suffix that suit ``value`` of ``unit``."""
    if unit == "s":
        if value < 1e-3:
            return 1e6, "µs"
        return (1e3, "ms") if value < 1 else (1.0, "s")
    if unit == "B":
        if value >= 1 << 20:
            return 1 / (1 << 20), "MiB"
        return (1 / 1024, "KiB") if value >= 10 * 1024 else (1.0, "B")
    if unit != "1/s":
        return 1.0, unit
    return 1.0, "/s"


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _human(value: float, unit: str) -> str:
    factor, suffix = _scale(value, unit)
    return f"{_num(value * factor)}{'' if suffix == '/s' else ' '}{suffix}"


def _span(lo: float, hi: float, unit: str) -> str:
    factor, suffix = _scale(hi, unit)
    return f"{_num(lo * factor)}-{_num(hi * factor)}{'' if suffix == '/s' else ' '}{suffix}"


COLUMNS = ("figure", "value", "ratio", "floor", "floor value", "p10-p90", "goal", "n")
# What must never wrap; the rest wraps on a narrow terminal rather than being cut off.
NO_WRAP = ("figure", "value", "ratio", "floor value")


def _row(f: Figure) -> list[str]:
    return [
        escape(f.name),
        _human(f.value.get(f.stat), f.unit),
        f"{f.ratio:.3g}",
        escape(f.floor_name),
        _human(f.floor.get(f.stat), f.unit),
        _span(f.value.p10, f.value.p90, f.unit),
        escape(f.goal),
        str(f.value.n),
    ]


def _table(report: Report) -> Table:
    table = Table(pad_edge=False, box=box.SIMPLE_HEAD)
    for col in COLUMNS:
        left = col in ("figure", "floor", "goal")
        table.add_column(col, justify="left" if left else "right", no_wrap=col in NO_WRAP)
    for key, figures in report.sections.items():
        table.add_row(f"[bold]{TITLES.get(key, key)}[/]", end_section=False)
        for figure in figures:
            table.add_row(*_row(figure))
    return table


def _blocks(console: Console, report: Report) -> None:
    """The table's cells as lines that wrap as a whole, never cut to fit a column."""
    for key, figures in report.sections.items():
        console.print(f"[bold]{TITLES.get(key, key)}[/]")
        for f in figures:
            cells = dict(zip(COLUMNS, _row(f), strict=True))
            spread = f"p10-p90 {cells['p10-p90']}, n {cells['n']}"
            console.print(f"  {cells['figure']}: {cells['value']} ({spread})")
            console.print(
                f"    {cells['ratio']} x floor {cells['floor']} {cells['floor value']}"
                + (f"; goal {cells['goal']}" if cells["goal"] else "")
            )


def render(console: Console, report: Report) -> None:
    """Print the report for a human: machine, settings, one table, notes."""
    m, s = report.machine, report.settings
    console.print(
        f"[bold]runner bench[/]{' --quick' if report.quick else ''}: {m['nproc']} CPU "
        f"({escape(m['cpu'])}), Python {m['python']}, {escape(m['server'])} at "
        f"{escape(m['server_url'])}{' (embedded)' if m['embedded'] else ''}, "
        f"{escape(m['persistence'])}"
    )
    console.print(
        f"bench workers: lease {s['lease_seconds']:g}s, sweep {s['sweep_seconds']:g}s, "
        f"grace {s['shutdown_grace']:g}s; {report.seconds:.0f}s in all; load average at the "
        f"start {' '.join(f'{x:g}' for x in m.get('load_average', []))}"
    )
    table = _table(report)
    wide = console.options.update_width(10_000)  # what the table needs, unclamped
    if Measurement.get(console, wide, table).maximum <= console.width:
        console.print(table)
    else:  # a pipe (80 columns) or a narrow terminal: whole figures, one block each
        _blocks(console, report)
    console.print(
        "value and floor value: medians, or p99 where the figure says so; ratio = value / floor"
    )
    for figures in report.sections.values():
        for f in figures:
            if f.note:
                console.print(f"[dim]{escape(f.name)}: {escape(f.note)}[/dim]")

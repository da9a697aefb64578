"""``runner bench``: what durability costs per step, and how fast a turn comes back.

Every figure is a median over repeated samples, with its spread, set beside its
physical floor measured in the same run (a bare ``PING``, ``XREAD``, ``XRANGE``, a plain
RQ job). :func:`runner.bench.main.run_bench` runs it all; this module stays light because
worker processes import :func:`noop` from it as the plain job.
"""

from __future__ import annotations


def noop() -> None:
    """The plain RQ job the turn throughput is measured against: does nothing."""

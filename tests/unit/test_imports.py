"""Every module imports on its own in a fresh interpreter: no import cycle, no hidden order.

A cycle only shows when the module that closes it is imported first, so each module gets
its own interpreter (started all at once: the cost is the interpreters' start-up).
``runner`` must not import ``workers`` (the CLI imports it lazily, inside commands).
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import runner
import workers

CHECK = """
import importlib, sys
importlib.import_module({module!r})
if {module!r}.startswith("runner"):
    bad = sorted(m for m in sys.modules if m == "workers" or m.startswith("workers."))
    if bad:
        sys.exit("imports " + ", ".join(bad))
"""


def _modules() -> list[str]:
    names = []
    for package in (runner, workers):
        names.append(package.__name__)
        prefix = package.__name__ + "."
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix)]
    # __main__ runs the CLI when imported; it is one import of runner.cli, checked below.
    return sorted(n for n in names if not n.endswith("__main__"))


def test_modules_are_found() -> None:
    names = _modules()
    assert {"runner.store", "runner.cli", "workers.agent", "workers.worker"} <= set(names)


def test_every_module_imports_alone() -> None:
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-c", CHECK.format(module=module)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in _modules()
    }
    failed = {}
    for module, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[module] = (stderr.strip().splitlines() or ["?"])[-1]
    assert failed == {}

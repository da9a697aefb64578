"""Issue 15: the web page in a real browser (Debian's chromium, driven by Playwright).

The test setup installs chromium itself (``apt-get install -y chromium``) when it is
missing and we are root, as in CI; elsewhere it skips, saying why. Playwright's own
browser download (``playwright install``) is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.helpers import step_script, write_script
from tests.serving import make_api

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("needs Debian's chromium: run as root with apt-get, or install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0 or not CHROMIUM.exists():
            pytest.skip(f"apt-get install chromium failed: {done.stderr.strip()[-300:]}")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        yield launched
        launched.close()


def test_run_page_follows_a_live_turn(cli: Cli, browser: Any, tmp_path: Path) -> None:
    api = make_api(cli)
    script = write_script(tmp_path / "s.json", step_script(3, sleep=0.5))
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hello from the browser")
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
    page.goto(f"{api.url}/#/runs/{run_id}")
    page.fill("#token", api.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#events .user", timeout=20_000)
    assert page.is_visible("#cancel")  # a writer's token may cancel a live run
    cli.worker("w1")  # the turn starts while the page is open: it arrives live
    page.wait_for_selector("#events .tool details", timeout=30_000)
    page.wait_for_selector("#ended", timeout=30_000)
    assert page.inner_text("#state") == "succeeded"
    assert "All done." in page.inner_text("#events")
    assert "on w1" in page.inner_text("#events")  # a status change names its worker
    assert not page.is_visible("#cancel")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)
    page.goto(f"{api.url}/#/")
    page.wait_for_selector(f"#runs a[href='#/runs/{run_id}']", timeout=20_000)

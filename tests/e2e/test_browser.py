"""Issue 15: the web page in a real browser (Debian's chromium, driven by Playwright).

The test setup installs chromium itself (``apt-get install -y chromium``) when it is
missing and we are root, as in CI; elsewhere it skips, saying why. Playwright's own
browser download (``playwright install``) is never used.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.events import MessageEvent
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import debian_package, step_script, write_script
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
    why = debian_package("chromium", CHROMIUM.exists)
    if why:
        pytest.skip(f"needs Debian's chromium: {why}")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(chromium), args=ARGS)
        yield launched
        launched.close()


STREAMING_BEFORE_COMMIT = """() => {
  const live = document.querySelector("#streaming .text");
  const committed = document.querySelectorAll("#events .assistant:not(.streaming)").length;
  return live !== null && live.textContent.length > 0 && committed === 0;
}"""


def test_run_page_follows_a_live_turn(cli: Cli, browser: Any, tmp_path: Path) -> None:
    api = make_api(cli)
    notes = {"path": "notes.txt", "content": "hello from the turn\n"}
    steps = [
        {
            "content": "Writing notes. " * 12,
            "tool": "write_file",
            "args": notes,
            "sleep": 3,
        },
        *step_script(1, sleep=0.5),
    ]
    script = write_script(tmp_path / "s.json", steps)
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hello from the browser")
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
    page.goto(f"{api.url}/#/runs/{run_id}")
    page.fill("#token", api.token)
    page.click("button[type=submit]")
    page.wait_for_selector("#events .user", timeout=20_000)
    assert page.is_visible("#cancel")  # a writer's token may cancel a live run
    assert not page.is_visible("#approve")  # only a waiting run shows approve / deny
    cli.worker("w1")  # the turn starts while the page is open: it arrives live
    # The answer's text grows on the page while the model streams it, before the commit.
    page.wait_for_function(STREAMING_BEFORE_COMMIT, timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-page-streaming.png"), full_page=True)
    page.wait_for_selector("#events .tool details", timeout=30_000)
    page.wait_for_selector("#ended", timeout=30_000)
    assert page.inner_text("#state") == "succeeded"
    assert "Writing notes." in page.inner_text("#events .assistant")
    assert page.query_selector("#streaming") is None  # replaced by the committed message
    assert "All done." in page.inner_text("#events")
    assert "on w1" in page.inner_text("#events")  # a status change names its worker
    assert not page.is_visible("#cancel")
    page.wait_for_selector("#diff pre .add", timeout=20_000)  # the workspace diff
    assert "+hello from the turn" in page.inner_text("#diff")
    page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px)"
    page.goto(f"{api.url}/#/")
    page.wait_for_selector(f"#runs a[href='#/runs/{run_id}']", timeout=20_000)
    later = cli.submit("--model", "scripted", "--script", str(script), "a second run")
    # The list is live: the new run shows up without a reload.
    page.wait_for_selector(f"#runs a[href='#/runs/{later}']", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "runs-list.png"), full_page=True)


def signed_in(browser: Any, url: str, token: str) -> Any:
    """A page in its own browser context (its own cookie), signed in with ``token``."""
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(url)
    page.fill("#token", token)
    page.click("button[type=submit]")
    return page


def parked_page(page: Any) -> None:
    page.wait_for_selector("#ended:has-text('parked: waiting')", timeout=30_000)
    assert page.inner_text("#state") == "waiting"
    assert "needs approval: shell" in page.inner_text("#events")


def tool_results(store: RunStore, run_id: str) -> list[str]:
    return [
        e.content for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "tool"
    ]


def test_approve_and_deny_from_the_run_page(
    cli: Cli, store: RunStore, browser: Any, tmp_path: Path
) -> None:
    api = make_api(cli)
    steps = [
        {"content": "Cleaning up.", "tool": "shell", "args": {"command": "echo approved-ran"}},
        {"content": "All done."},
    ]
    script = str(write_script(tmp_path / "s.json", steps))
    cli.worker("w1")
    approved = cli.submit("--model", "scripted", "--script", script, "--approve", "shell", "go")
    denied = cli.submit("--model", "scripted", "--script", script, "--approve", "shell", "go")
    ARTIFACTS.mkdir(exist_ok=True)

    # A read-only token sees the parked run, and no button to act on it.
    reader = signed_in(browser, f"{api.url}/#/runs/{denied}", api.reader)
    parked_page(reader)
    assert reader.query_selector("#approve") is None and reader.query_selector("#deny") is None
    assert reader.query_selector("#cancel") is None
    reader.screenshot(path=str(ARTIFACTS / "run-page-waiting-read-only.png"), full_page=True)

    # Approve: the shell call runs on the worker and the run succeeds, followed live.
    page = signed_in(browser, f"{api.url}/#/runs/{approved}", api.token)
    parked_page(page)
    assert page.is_visible("#approve") and page.is_visible("#deny") and page.is_visible("#cancel")
    page.screenshot(path=str(ARTIFACTS / "run-page-waiting.png"), full_page=True)
    page.click("#approve")
    page.wait_for_selector("#ended:has-text('end of run: succeeded')", timeout=30_000)
    assert page.inner_text("#state") == "succeeded"
    assert "approved-ran" in (page.text_content("#events .tool") or "")
    assert "All done." in page.inner_text("#events")
    assert page.query_selector("#approve") is None
    assert tool_results(store, approved)[0].splitlines()[0] == "approved-ran"

    # Deny with a reason: the tool never runs, and the model is given the denial as the
    # call's result, then answers again (the script's next step).
    page.goto(f"{api.url}/#/runs/{denied}")
    parked_page(page)
    page.fill("#reason", "not on prod")
    page.click("#deny")
    page.wait_for_selector("#ended:has-text('end of run: succeeded')", timeout=30_000)
    shown = page.text_content("#events .tool") or ""
    assert "denied by user: not on prod" in shown and "approved-ran" not in shown
    assert tool_results(store, denied) == ["denied by user: not on prod"]
    roles = [(e.role, e.content) for e in store.events(denied) if isinstance(e, MessageEvent)]
    assert roles[-2:] == [("tool", "denied by user: not on prod"), ("assistant", "All done.")]
    page.screenshot(path=str(ARTIFACTS / "run-page-denied.png"), full_page=True)

    # The read-only page, left open on the parked run, followed it to its end by itself.
    reader.wait_for_selector("#ended:has-text('end of run: succeeded')", timeout=30_000)
    assert "denied by user: not on prod" in (reader.text_content("#events .tool") or "")

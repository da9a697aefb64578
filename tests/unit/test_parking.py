"""Budgets, prices, approvals and the parking scripts, on fakeredis (real Lua)."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from runner import parking, prices, queueing
from runner.budgets import Adds, Limits, Spent, adds_from_json, parse_duration, reached
from runner.client import Client, Submission
from runner.errors import BadInput, NoSuchRun, WrongState
from runner.events import Event, MessageEvent, Status, StatusEvent, ToolCallOut, UsageEvent
from runner.keys import Keys
from runner.parking import Park, untouched
from runner.settings import Settings, get_settings, load_settings
from runner.store import RunStore
from workers.gate import Gate
from workers.providers.base import Reply, ToolCall, Usage
from workers.tools import register, tool, unregister

SCRIPT = '{"steps": [{"content": "done"}]}'


@pytest.fixture
def client() -> Client:
    settings = Settings(redis_url="redis://unused")
    c = Client(settings)
    fake = fakeredis.FakeRedis(decode_responses=True)
    c.redis = fake
    c.rq = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    c.store = RunStore(fake, Keys(settings.prefix))
    return c


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("45", 45), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5m", "5 minutes", "1e3s", "2w", "nan", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput):
        parse_duration(text)


def test_adds_are_checked() -> None:
    assert adds_from_json({"add_tokens": 5, "add_time": "30m"}) == Adds(tokens=5, time=1800.0)
    for body in ({"add_tokens": -1}, {"add_cost": "x"}, {"add_steps": 1.5}, {"add_other": 1}):
        with pytest.raises(BadInput):
            adds_from_json(body)
    with pytest.raises(BadInput, match="add-cost"):
        Adds(cost=float("inf")).checked()


def test_prices_lookup_and_user_table(tmp_path: Path) -> None:
    table = prices.load(None)
    assert prices.price_of(table, "openai:gpt-4o-mini-2024-07-18") == (0.15, 0.6)
    assert prices.price_of(table, "openai:gpt-4o-2024-08-06") == (2.5, 10.0)
    assert prices.price_of(table, "scripted") is None
    toml = tmp_path / "p.toml"
    toml.write_text(
        '[scripted]\ninput = 1000000\noutput = 2000000\n\n["gpt-4o"]\ninput = 1\noutput = 1\n'
    )
    table = prices.load(toml)
    assert prices.cost(table, "scripted", 3, 1) == 5.0
    assert prices.price_of(table, "openai:gpt-4o") == (1.0, 1.0)  # the user's wins
    assert prices.price_of(table, "openai:gpt-4.1") == (2.0, 8.0)  # built-ins stay
    bad = tmp_path / "bad.json"
    for text, problem in [
        ("[1]", "expected an object"),
        ('{"m": {"input": -1, "output": 1}}', "input must be a number"),
        ('{"m": {"input": 1}}', "exactly input and output"),
        ("{", "not JSON"),
    ]:
        bad.write_text(text)
        prices._load.cache_clear()
        with pytest.raises(ValueError, match=problem):
            prices.load(bad)


def test_a_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"m": {"input": "cheap", "output": 1}}')
    for name, value, said in [
        ("RUNNER_PRICES", str(tmp_path / "p.json"), "RUNNER_PRICES"),
        ("RUNNER_MAX_TIME", "soon", "RUNNER_MAX_TIME: duration must be a duration such as 90s"),
        ("RUNNER_MAX_COST", "-1", "RUNNER_MAX_COST"),
        ("RUNNER_APPROVE_TOOLS", "shell,rm -rf", "not a tool name"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            get_settings.cache_clear()
            with pytest.raises(BadInput, match=said):
                load_settings()
    get_settings.cache_clear()
    monkeypatch.setenv("RUNNER_MAX_TIME", "2h")
    monkeypatch.setenv("RUNNER_APPROVE_TOOLS", "shell, write_file")
    settings = load_settings()
    assert (settings.max_time, settings.approve_tools) == (7200.0, ("shell", "write_file"))
    get_settings.cache_clear()


def _status(status: Status, epoch: int, ms: int = 1, reason: str = "") -> StatusEvent:
    return StatusEvent(status=status, epoch=epoch, id=f"{ms}-0", reason=reason)


ASK = MessageEvent(
    role="assistant",
    content="",
    epoch=1,
    tool_calls=[
        ToolCallOut(id="c1", name="shell", arguments={}),
        ToolCallOut(id="c2", name="x", arguments={}),
    ],
)
RUN1, RUN2, RUN3 = (_status(Status.RUNNING, e) for e in (1, 2, 3))
WAIT1 = _status(Status.WAITING, 1)
BACK1 = _status(Status.QUEUED, 1, reason="approved: shell")
DENIAL1 = MessageEvent(role="tool", content="denied by user", tool_call_id="c1", epoch=1)


@pytest.mark.parametrize(
    ("events", "fresh"),
    [
        ([RUN1, ASK, WAIT1, BACK1, RUN2], True),  # parked before the call, approved
        ([RUN1, ASK, WAIT1, DENIAL1, BACK1, RUN2], True),  # c1 denied: c2 never started
        ([RUN1, ASK, WAIT1, BACK1, RUN2, _status(Status.QUEUED, 2, reason="handoff"), RUN3], False),
        ([RUN1, ASK, WAIT1, BACK1, RUN2, _status(Status.WAITING, 2)], True),  # parked again
        ([RUN1, ASK, _status(Status.QUEUED, 1, reason="lease expired"), RUN2], False),
        ([RUN1, ASK], False),
        ([RUN1, WAIT1, BACK1, RUN2, MessageEvent(role="user", content="hi", epoch=2)], False),
    ],
)
def test_untouched(events: list[Event], fresh: bool) -> None:
    assert untouched(events) is fresh


def test_spent_and_limits() -> None:
    events: list[Event] = [
        _status(Status.RUNNING, 1, 1000),
        UsageEvent(input_tokens=100, output_tokens=20, cost=0.5),
        MessageEvent(role="tool", content="ok", tool_call_id="c"),
        _status(Status.QUEUED, 1, 4000),
        _status(Status.RUNNING, 2, 9000),
        _status(Status.RUNNING, 2, 9500),  # the restore note of the same attempt
        UsageEvent(input_tokens=10, output_tokens=0),
    ]
    spent = Spent.fold(events)
    assert (spent.tokens, spent.cost, spent.tool_calls) == (130, 0.5, 1)
    assert (spent.running_ms, spent.running_since) == (3000, 9000)
    assert reached(Limits(10), spent, 3.0) is None
    hit = reached(Limits(10, tokens=130), spent, 3.0)
    assert hit is not None and hit[0] == "tokens" and "--add-tokens" in hit[1]
    assert reached(Limits(10, time=60), spent, 61.0) is not None
    assert reached(Limits(10, cost=0.4, tool_calls=5), spent, 1.0) == (
        "cost",
        "cost budget reached ($0.5000 of 0.4); raise it with: runner resume ID --add-cost USD",
    )


def _parked(client: Client, why: Park, **limits: object) -> str:
    run_id = client.submit(Submission("go", script=SCRIPT, **limits))  # type: ignore[arg-type]
    assert client.store.claim(run_id, "w1", 5) == 1
    parking.park(client.store, run_id, 1, "w1", why)
    return run_id


APPROVAL = Park("needs approval: shell {}", "approval", "c1", "shell")


def test_approve_once_then_runs(client: Client) -> None:
    run_id = _parked(client, APPROVAL)
    record = client.get(run_id)
    assert (record.status, record.waiting_for, record.gate_call) == (
        Status.WAITING,
        "approval",
        "c1",
    )
    assert client.store.redis.exists(client.store.keys.lease(run_id)) == 0
    assert client.approve(run_id) is Status.WAITING
    record = client.get(run_id)
    assert (record.status, record.approved, record.waiting_for) == (Status.QUEUED, "c1", "")
    assert queueing.in_queue(client.rq, run_id, "default")
    with pytest.raises(WrongState, match="is queued, not waiting for an approval"):
        client.approve(run_id)
    with pytest.raises(WrongState):
        client.deny(run_id)


def test_deny_commits_the_denial_as_the_result(client: Client) -> None:
    run_id = _parked(client, APPROVAL)
    client.deny(run_id, "not on prod")
    last = [e for e in client.store.events(run_id) if isinstance(e, MessageEvent)][-1]
    assert (last.role, last.tool_call_id, last.name) == ("tool", "c1", "shell")
    assert last.content == "denied by user: not on prod"
    assert client.get(run_id).status is Status.QUEUED
    assert untouched(client.store.events(run_id))


def test_resume_raises_limits_set_and_leaves_unset_ones(client: Client) -> None:
    run_id = _parked(client, Park("tokens budget reached", "tokens"), max_tokens=100, max_cost=0.5)
    with pytest.raises(WrongState, match="waits for its tokens budget"):
        client.approve(run_id)
    client.resume(run_id, Adds(steps=2, tokens=50, cost=0.25, time=60, tool_calls=3))
    record = client.get(run_id)
    assert (record.max_steps, record.max_tokens, record.max_cost) == (52, 150, 0.75)
    assert (record.max_time, record.max_tool_calls) == (0, 0)  # never set: still none
    assert record.status is Status.QUEUED


def test_wrong_states(client: Client) -> None:
    waiting = _parked(client, APPROVAL)
    with pytest.raises(WrongState, match="waits for an approval"):
        client.resume(waiting)
    client.cancel(waiting)
    with pytest.raises(WrongState, match="is cancelled"):
        client.approve(waiting)
    queued = client.submit(Submission("go", script=SCRIPT))
    with pytest.raises(WrongState, match="is queued, not suspended or waiting"):
        client.resume(queued)
    with pytest.raises(NoSuchRun):
        client.approve("r0000000000deadbeef")
    with pytest.raises(BadInput):
        client.resume(queued, Adds(tokens=-1))


def test_submit_limits_and_usage_totals(client: Client) -> None:
    sub = Submission("go", script=SCRIPT, max_tokens=10, max_time=90.0, approve=("shell", "shell"))
    run_id = client.submit(sub)
    record = client.get(run_id)
    assert (record.max_tokens, record.max_time, record.approve) == (10, 90.0, "shell")
    for bad in (
        Submission("go", script=SCRIPT, max_cost=-1),
        Submission("go", script=SCRIPT, approve=("a b",)),
    ):
        with pytest.raises(BadInput):
            client.submit(bad)
    assert client.store.claim(run_id, "w1", 5) == 1
    seen = len(client.store.events(run_id))
    usage = [UsageEvent(input_tokens=7, output_tokens=3, cost=0.125)] * 2
    client.store.commit(run_id, 1, usage, seen, steps=0)
    record = client.get(run_id)
    assert (record.tokens_in, record.tokens_out, record.cost) == (14, 6, 0.25)


@tool(approval=True)
def flagged(a: str) -> str:
    """A tool that flags itself as needing approval."""
    return a


def test_gate(request: pytest.FixtureRequest, client: Client) -> None:
    run_id = client.submit(
        Submission("go", script=SCRIPT, approve=("write_file",), max_tool_calls=2)
    )
    settings = Settings(redis_url="redis://unused", approve_tools=("shell",))
    gate = Gate(settings, 5)
    gate.load(client.get(run_id), client.store.events(run_id))
    register(flagged)
    request.addfinalizer(lambda: unregister("flagged"))
    for name in ("shell", "write_file", "flagged"):
        held = gate.before_tool(ToolCall("c9", name, {"a": "b" * 300}))
        assert held is not None and held.waiting_for == "approval" and held.call == "c9"
        assert len(held.reason) < 250
    assert gate.before_tool(ToolCall("c9", "read_file", {})) is None
    gate.approved = "c9"
    assert gate.before_tool(ToolCall("c9", "shell", {})) is None
    gate.add([MessageEvent(role="tool", content="", tool_call_id="x")] * 2)
    held = gate.before_tool(ToolCall("c10", "read_file", {}))
    assert held is not None and held.waiting_for == "tool_calls"
    held = gate.before_model(5)
    assert held is not None and held.waiting_for == "steps"
    gate.limits = Limits(5, cost=1.0)
    held = gate.before_model(0)  # scripted has no price: a cost limit cannot be counted
    assert held is not None and "has no price on this worker" in held.reason
    usage, estimated = gate.usage(Reply("x" * 40, []), [{"role": "user", "content": "y" * 400}])
    # runner.context's estimate: 4 a message plus UTF-8 bytes / 3, rounded up
    assert (usage, estimated) == (Usage(4 + 134, 14, None), True)
    gate.model, gate.prices = "openai:gpt-4o", prices.load(None)
    assert gate.usage(Reply("", [], Usage(1_000_000, 0)), [])[0].cost == 2.5

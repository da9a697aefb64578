"""Key names, the run id pattern, and the event model: pure Python, no server."""

from __future__ import annotations

import json
import re
import time

import pytest

from runner.errors import BadInput, CorruptEvent
from runner.events import (
    SCHEMA_VERSION,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
    decode,
    encode,
    to_json,
    to_openai,
    ts_of,
)
from runner.keys import (
    MAX_ID_SHOWN,
    RUN_ID_PATTERN,
    RUN_KEYS,
    SCRIPT_KEYS,
    Keys,
    check_run_id,
    check_session,
    new_run_id,
)

BAD_IDS = [
    "../x",
    "*",
    "rq:queue:default",
    "",
    "r" * 10_000,
    "R0000000000deadbeef",  # upper case
    "r0000000000deadbeefa",  # one too long
    "r0000000000deadbee",  # one too short
    "r0000000000deadbeeg",  # suffix is hex
    "rw000000000deadbeef",  # time part is base32hex (0-9a-v)
    "r0000000000deadbeef\n",
    " r0000000000deadbeef",
    "r{000000000}eadbeef",
]


def test_new_run_ids_pass_the_pattern_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert all(RUN_ID_PATTERN.fullmatch(i) for i in ids)
    assert all(check_run_id(i) == i for i in ids[:10])
    assert len(set(ids)) == len(ids)


def test_run_ids_sort_by_creation_time() -> None:
    first = new_run_id()
    time.sleep(0.002)  # the id's time part has millisecond resolution
    assert new_run_id()[:11] > first[:11]


@pytest.mark.parametrize("bad", BAD_IDS, ids=range(len(BAD_IDS)))
def test_bad_ids_are_rejected(bad: str) -> None:
    with pytest.raises(BadInput) as info:
        check_run_id(bad)
    message = str(info.value)
    assert message.startswith("not a run id")
    assert len(message) < MAX_ID_SHOWN + 80, "a long id is echoed back cut short"
    with pytest.raises(BadInput):
        Keys().record(bad)


def test_non_string_id_is_rejected() -> None:
    with pytest.raises(BadInput):
        check_run_id(None)  # type: ignore[arg-type]


def test_one_runs_keys_share_one_hash_tag() -> None:
    run_id = new_run_id()
    keys = Keys("pfx").run_keys(run_id)
    # record, events, lease, inbox, script, manifest, blobs, history
    assert len(keys) == len(set(keys)) == 8
    tags = {re.search(r"\{([^}]*)\}", k).group(1) for k in keys}  # type: ignore[union-attr]
    assert tags == {run_id}
    assert all(k.startswith("pfx:run:{") for k in keys)


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "é", "a\nb", "{tag}", "*"])
def test_bad_session_names_are_rejected(name: str) -> None:
    with pytest.raises(BadInput, match="not a session name") as info:
        check_session(name)
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(BadInput):
        Keys().session(name)


@pytest.mark.parametrize("name", ["s", "team.alpha:1", "A-b_c", "x" * 64])
def test_good_session_names_pass(name: str) -> None:
    assert check_session(name) == name
    assert Keys("p").session(name) == f"p:session:{name}"


def test_script_keys_follow_the_slot_names() -> None:
    run_id = new_run_id()
    k = Keys("p")
    keys = k.script_keys(run_id)
    assert len(keys) == len(SCRIPT_KEYS) - 2, "the session slots are only filled when given"
    assert keys[: len(RUN_KEYS)] == k.run_keys(run_id)
    prev = new_run_id()
    for name, key in zip(SCRIPT_KEYS, k.script_keys(run_id, "s1", prev), strict=True):
        expected = k.record(prev) if name == "prev" else getattr(k, name)
        if callable(expected):
            expected = expected("s1" if name == "session" else run_id)
        assert key == expected, name


def test_indexes_live_under_the_prefix() -> None:
    k = Keys("pfx")
    for name in (k.runs, k.active, k.queued, k.sessions, k.sweep_lock, k.session("s")):
        assert name.startswith("pfx:")
        assert "{" not in name


EVENTS = [
    StatusEvent(status=Status.RUNNING, worker="w1"),
    StatusEvent(status=Status.SUSPENDED, reason="crash loop"),
    MessageEvent(role="user", content="héllo ✓"),
    MessageEvent(
        role="assistant",
        content="",
        tool_calls=[ToolCallOut(id="c1", name="shell", arguments={"command": "ls -la"})],
    ),
    MessageEvent(role="tool", content="out\n", tool_call_id="c1", name="shell"),
    UsageEvent(input_tokens=10, output_tokens=3, cost=0.25),
    UsageEvent(input_tokens=1, output_tokens=0),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: f"{e.type}")
def test_encode_decode_round_trip(event: Event) -> None:
    etype, data = encode(event)
    assert etype == event.type
    stored = json.loads(data)
    assert not {"v", "id", "ts", "epoch", "type"} & stored.keys(), "the envelope is the store's"
    fields = {"v": str(SCHEMA_VERSION), "type": etype, "epoch": "7", "data": data}
    back = decode("r0000000000deadbeef", "1700000000123-4", fields)
    assert back == event.model_copy(
        update={"id": "1700000000123-4", "ts": "2023-11-14T22:13:20.123Z", "epoch": 7}
    )
    line = json.loads(to_json(back))
    assert line["id"] == "1700000000123-4"
    assert line["epoch"] == 7
    assert line["v"] == SCHEMA_VERSION
    assert None not in line.values()


def test_ts_comes_from_the_stream_id() -> None:
    assert ts_of("0-0") == "1970-01-01T00:00:00.000Z"
    assert ts_of("1700000000123-4") == "2023-11-14T22:13:20.123Z"
    assert ts_of("1700000000999") == "2023-11-14T22:13:20.999Z"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"v": "1", "type": "status", "epoch": "1"},
        {"v": "1", "type": "status", "epoch": "1", "data": "nope"},
        {"v": "1", "type": "status", "epoch": "1", "data": '"a string"'},
        {"v": "1", "type": "status", "epoch": "1", "data": '{"status": "lost"}'},
        {"v": "1", "type": "status", "epoch": "1", "data": '{"status": "queued", "x": 1}'},
        {"v": "2", "type": "status", "epoch": "1", "data": '{"status": "queued"}'},
        {"v": "x", "type": "status", "epoch": "1", "data": '{"status": "queued"}'},
        {"v": "1", "type": "usage", "epoch": "1", "data": '{"input_tokens": "many"}'},
    ],
)
def test_decode_rejects_malformed_entries(fields: dict[str, str]) -> None:
    with pytest.raises(CorruptEvent) as info:
        decode("r0000000000deadbeef", "5-1", fields)
    message = str(info.value)
    assert message.startswith("run r0000000000deadbeef: event 5-1 is malformed")
    assert "\n" not in message


def test_to_openai_shapes() -> None:
    call = MessageEvent(
        role="assistant",
        content="let me look",
        tool_calls=[
            ToolCallOut(id="c1", name="shell", arguments={"command": "ls"}),
            ToolCallOut(id="c2", name="read_file", arguments={"path": "a b.txt"}),
        ],
    )
    assert to_openai(call) == {
        "role": "assistant",
        "content": "let me look",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "shell", "arguments": '{"command": "ls"}'},
            },
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "read_file", "arguments": '{"path": "a b.txt"}'},
            },
        ],
    }
    for entry in to_openai(call)["tool_calls"]:
        assert isinstance(json.loads(entry["function"]["arguments"]), dict)
    tool = MessageEvent(role="tool", content="a\nb", tool_call_id="c1", name="shell")
    assert to_openai(tool) == {
        "role": "tool",
        "content": "a\nb",
        "tool_call_id": "c1",
        "name": "shell",
    }
    assert to_openai(MessageEvent(role="user", content="hi")) == {"role": "user", "content": "hi"}
    final = MessageEvent(role="assistant", content="done", tool_calls=[])
    assert to_openai(final) == {"role": "assistant", "content": "done"}
    # A name on a non-tool message is not part of the OpenAI shape.
    named = MessageEvent(role="user", content="x", name="someone")
    assert "name" not in to_openai(named)

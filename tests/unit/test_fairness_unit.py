"""Priorities as queue names, and --key/--priority through the HTTP API's submit body."""

from __future__ import annotations

import pytest

from runner.errors import BadInput
from runner.fairness import listen_order, priority_queue
from runner.http.app import submission


def test_priority_queue_names() -> None:
    assert [priority_queue("q", p) for p in ("high", "normal", "low")] == ["q:high", "q", "q:low"]
    assert listen_order(["q"]) == ["q:high", "q", "q:low"]
    with pytest.raises(BadInput, match="priority must be one of high, normal, low"):
        priority_queue("q", "urgent")


def test_http_submit_body_carries_key_and_priority() -> None:
    sub = submission({"prompt": "go", "key": "acme", "priority": "low"})
    assert (sub.key, sub.priority) == ("acme", "low")
    plain = submission({"prompt": "go"})
    assert (plain.key, plain.priority) == ("", "normal")
    with pytest.raises(BadInput, match="key must be a string"):
        submission({"prompt": "go", "key": 5})

"""A run's record: the small hash that says where a run is, parsed and checked.

What does not validate is damage, said and never hidden: :func:`parse` raises Damaged
naming each bad field; :func:`listable` gives a placeholder with ``damaged`` set, so a
listing never breaks on one record.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from runner.budgets import BudgetFields
from runner.errors import Damaged
from runner.events import PARKED, TERMINAL, Status
from runner.keys import MAX_ID_SHOWN

log = logging.getLogger("runner.store")  # the store's log: damage is the store's to report
# Stands in for what a damaged record lacks, so that it still lists.
PLACEHOLDERS = {"status": "failed", "epoch": "0", "queue": "", "model": ""}


class RunRecord(BudgetFields):
    """The small hash that says where a run is (budget and approval fields: BudgetFields)."""

    id: str
    status: Status
    epoch: int
    queue: str
    model: str
    session: str = ""
    max_steps: int = 0
    steps: int = 0
    dirty: int = 0
    worker: str = ""
    reason: str = ""
    error: str = ""
    title: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    cancel: bool = False
    workspace: str = ""  # set while the workspace is not carried across hosts: why
    damaged: str = ""  # set when the stored record does not validate: what is wrong

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def parked(self) -> bool:
        return self.status in PARKED


def cut(text: str) -> str:
    """``text`` cut short for a log line or a message."""
    return text[:MAX_ID_SHOWN] + ("..." if len(text) > MAX_ID_SHOWN else "")


def parse(run_id: str, raw: dict[str, str]) -> RunRecord:
    """The record of ``run_id`` from its hash; Damaged naming each bad field if it is bad."""
    try:
        return _record(run_id, raw)
    except ValidationError as exc:
        raise Damaged(_problem(run_id, exc)) from exc


def _record(run_id: str, raw: dict[str, str]) -> RunRecord:
    data: dict[str, Any] = dict(raw)
    data.pop("damaged", None)  # said by the reader, never by the hash
    data["id"] = run_id
    data["cancel"] = raw.get("cancel") == "1"
    return RunRecord.model_validate(data)


def _problem(run_id: str, exc: ValidationError) -> str:
    """One line naming the run and each bad field (the message of Damaged)."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "record"
        if err["type"] == "missing":
            parts.append(f"{field} is missing")
        else:
            parts.append(f"{field} = {cut(str(err['input']))!r}: {err['msg']}")
    return f"run {run_id}: damaged record: " + "; ".join(parts)


def listable(run_id: str, raw: dict[str, str]) -> RunRecord:
    """The record, or a placeholder that says what is damaged (status as parsed, if it is)."""
    try:
        return _record(run_id, raw)
    except ValidationError as exc:
        problem = _problem(run_id, exc)
        log.warning("damaged record", extra={"run": run_id, "problem": problem})
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        kept = {k: v for k, v in raw.items() if k not in bad}
        record = _record(run_id, {**PLACEHOLDERS, **kept})
        title = problem.removeprefix(f"run {run_id}: ")
        return record.model_copy(update={"damaged": problem, "title": title})

"""The client over HTTP: what ``open_client`` returns when RUNNER_API_URL is set.

It has the Client's methods the run commands use (submit, get, runs, transcript,
cancel, resume, send, follow), over ``runner serve``'s JSON endpoints and its SSE
stream, so the CLI prints the same output and exits with the same codes. Errors come
back as the same RunnerError classes, by HTTP status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from pydantic import TypeAdapter

from runner.budgets import Adds
from runner.client import STREAM_ID, Client, Submission
from runner.errors import (
    AccessDenied,
    BadInput,
    NoSuchRun,
    RunnerError,
    ServerUnavailable,
    WrongState,
)
from runner.events import DeltaEvent, Event, MessageEvent, Status
from runner.forking import Forked
from runner.http.admin import Sent
from runner.keys import check_run_id, check_session
from runner.purge import Purged
from runner.session_admin import SessionInfo
from runner.settings import Settings
from runner.store import RunRecord
from runner.workspace.access import UploadProgress

ERRORS: dict[int, type[RunnerError]] = {
    400: BadInput,
    401: AccessDenied,
    403: AccessDenied,
    404: NoSuchRun,
    409: WrongState,
    413: BadInput,
    503: ServerUnavailable,
}
_event: TypeAdapter[Event] = TypeAdapter(Event)
_delta: TypeAdapter[DeltaEvent] = TypeAdapter(DeltaEvent)


class RemoteClient(Client):
    """The run operations through ``runner serve`` (never Redis)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        token = settings.api_token.get_secret_value() if settings.api_token else ""
        self.http = httpx.Client(
            base_url=str(settings.api_url),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30, read=60),
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            reply = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach {self.settings.api_url}: {exc}") from exc
        return _checked(reply)

    def submit(self, sub: Submission, progress: UploadProgress | None = None) -> str:
        if sub.workspace:
            raise BadInput("--workspace is not supported through RUNNER_API_URL yet")
        body = {
            "prompt": sub.prompt,
            "model": sub.model,
            "queue": sub.queue,
            "max_steps": sub.max_steps,
            "script": sub.script,
            "session": sub.session,
            "max_tokens": sub.max_tokens,
            "max_cost": sub.max_cost,
            "max_time": sub.max_time,
            "max_tool_calls": sub.max_tool_calls,
            "approve": list(sub.approve),
            "system": sub.system,
            "context_tokens": sub.context_tokens,
        }
        if sub.key or sub.priority != "normal":  # issue 17: only when given
            body.update(key=sub.key, priority=sub.priority)
        return str(self._call("POST", "/runs", body)["id"])

    def get(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate(self._call("GET", f"/runs/{check_run_id(run_id)}"))

    def runs(self, status: Status | None = None, limit: int = 50) -> list[RunRecord]:
        query = f"?limit={limit}" + (f"&status={status.value}" if status else "")
        return [RunRecord.model_validate(r) for r in self._call("GET", "/runs" + query)["runs"]]

    def transcript(self, run_id: str) -> list[MessageEvent]:
        reply = self._call("GET", f"/runs/{check_run_id(run_id)}/transcript")
        return [MessageEvent.model_validate(m) for m in reply["messages"]]

    def workers_serving(self, queue: str) -> int:
        return int(self._call("GET", f"/queues/{queue}/workers")["workers"])

    def cancel(self, run_id: str) -> Status:
        return Status(self._call("POST", f"/runs/{check_run_id(run_id)}/cancel")["before"])

    def resume(self, run_id: str, adds: Adds | None = None) -> Status:
        body = (adds or Adds()).checked().as_json()
        return Status(self._call("POST", f"/runs/{check_run_id(run_id)}/resume", body)["before"])

    def approve(self, run_id: str) -> Status:
        return Status(self._call("POST", f"/runs/{check_run_id(run_id)}/approve", {})["before"])

    def deny(self, run_id: str, reason: str = "") -> Status:
        path = f"/runs/{check_run_id(run_id)}/deny"
        return Status(self._call("POST", path, {"reason": reason})["before"])

    def send(self, run_id: str, text: str) -> Status:
        """A message to a live run (WrongState for an ended one, as over Redis)."""
        path = f"/runs/{check_run_id(run_id)}/send"
        return Status(self._call("POST", path, {"message": text, "continue": False})["status"])

    # -- runner.http.admin.Admin: send's next turn, sessions, fork, purge (issue 14) --

    def send_or_continue(self, run_id: str, text: str) -> Sent:
        reply = self._call("POST", f"/runs/{check_run_id(run_id)}/send", {"message": text})
        if reply.get("next"):
            return Sent(str(reply["next"]), str(reply["session"]))
        return Sent(status=str(reply["status"]))

    def sessions(self, limit: int = 50) -> list[SessionInfo]:
        found = self._call("GET", f"/sessions?limit={int(limit)}")["sessions"]
        return [SessionInfo(**info) for info in found]

    def rename_session(self, old: str, new: str) -> int:
        check_session(new)
        reply = self._call("POST", f"/sessions/{check_session(old)}/rename", {"name": new})
        return int(reply["turns"])

    def delete_session(self, name: str) -> int:
        return int(self._call("POST", f"/sessions/{check_session(name)}/delete", {})["purged"])

    def fork(self, run_id: str, at: int, session: str = "") -> Forked:
        body = {"at": at, "session": session}
        reply = self._call("POST", f"/runs/{check_run_id(run_id)}/fork", body)
        return Forked(str(reply["id"]), int(reply["asked"]), int(reply["at"]))

    def purge_run(self, run_id: str) -> int:
        return int(self._call("POST", f"/runs/{check_run_id(run_id)}/purge", {})["keys"])

    def purge_older(self, age_seconds: int) -> Purged:
        reply = self._call("POST", "/purge", {"older_than": age_seconds})
        return Purged([str(r) for r in reply["runs"]], int(reply["keys"]), list(reply["kept"]))

    def follow_live(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
        after: str | None = None,
    ) -> Iterator[list[Event | DeltaEvent]]:
        """The SSE stream with its deltas, one event per batch (see :meth:`follow_batches`)."""
        yield from self._follow_sse(run_id, tail, on_retry, after, deltas=True)

    def follow_batches(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
        after: str | None = None,
    ) -> Iterator[list[Event]]:
        """The SSE stream, one event per batch; a lost connection resumes with Last-Event-ID."""
        for batch in self._follow_sse(run_id, tail, on_retry, after, deltas=False):
            yield [e for e in batch if not isinstance(e, DeltaEvent)]

    def _follow_sse(
        self,
        run_id: str,
        tail: int | None,
        on_retry: Callable[[BaseException], None] | None,
        after: str | None,
        deltas: bool,
    ) -> Iterator[list[Event | DeltaEvent]]:
        check_run_id(run_id)
        if tail is not None:
            raise BadInput("--tail is not available through RUNNER_API_URL")
        if after is not None and not STREAM_ID.fullmatch(after):
            raise BadInput(f"not an event id: {after[:40]!r} (expected MS-SEQ)")
        last = after or "0-0"
        deadline = time.monotonic() + self.settings.reconnect_seconds
        while True:
            try:
                for event in self._stream(run_id, last):
                    if event is None:
                        return
                    if isinstance(event, DeltaEvent):
                        if deltas:
                            yield [event]
                        continue
                    last = event.id
                    deadline = time.monotonic() + self.settings.reconnect_seconds
                    yield [event]
            except (httpx.HTTPError, ServerUnavailable) as exc:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"lost {self.settings.api_url} for good") from exc
                if on_retry is not None:
                    on_retry(exc)
                time.sleep(1)

    def _stream(self, run_id: str, last: str) -> Iterator[Event | DeltaEvent | None]:
        """Events from one SSE connection; None at ``end``; returns on ``problem``.

        A frame without an ``id:`` is a delta (ephemeral, never a resume point).
        """
        headers = {"Last-Event-ID": last}
        with self.http.stream("GET", f"/runs/{run_id}/events", headers=headers) as reply:
            if reply.status_code != 200:
                reply.read()
                _checked(reply)
            kind, data, has_id = "", "", False
            for line in reply.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line.startswith("id:"):
                    has_id = True
                elif not line and data:
                    if kind == "end":
                        yield None
                        return
                    if kind == "problem":
                        raise ServerUnavailable(json.loads(data)["error"])
                    if has_id:
                        yield _event.validate_json(data)
                    else:
                        yield _delta.validate_json(data)
                    kind, data, has_id = "", "", False


def _checked(reply: httpx.Response) -> Any:
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if reply.is_success:
        return body
    cls = ERRORS.get(reply.status_code, RunnerError)
    message = body.get("error") if isinstance(body, dict) else None
    raise cls(str(message or f"HTTP {reply.status_code}"))

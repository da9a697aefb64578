"""The Starlette app: JSON endpoints over the Client, events as SSE, the web page.

Errors leave as ``{"error": "one line"}``: 400 bad input, 401 no or unknown token,
403 a read-only token on a write, 404 no such run (or path), 409 the run's state does
not allow it, 413 a body too large, 503 Redis unreachable. The client is synchronous
(redis-py), so every call runs in the threadpool; following goes through the fan-out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from runner import metrics
from runner.budgets import LIMITS, adds_from_json, limits_from_json
from runner.client import STREAM_ID, Client, Submission
from runner.errors import (
    BadInput,
    Damaged,
    NoSuchRun,
    RunnerError,
    ServerUnavailable,
    WrongState,
)
from runner.events import DeltaEvent, Status, to_json, to_openai
from runner.http.auth import Grant, Tokens
from runner.http.fanout import Hub, Subscription
from runner.http.listing import RunsWatch
from runner.http.sessions_api import SessionEndpoints
from runner.keys import check_run_id

log = logging.getLogger("runner.http")
COOKIE = "runner_token"
BODY_SLACK = 64 * 1024
RETRY_MS = 2000  # how soon a browser's EventSource reconnects
Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """An HTTP error with its status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    first = message.splitlines()[0] if message.strip() else "error"
    return JSONResponse({"error": first}, status_code=status)


def status_of(exc: RunnerError) -> int:
    if isinstance(exc, NoSuchRun):
        return 404
    if isinstance(exc, WrongState):
        return 409
    if isinstance(exc, BadInput):
        return 400
    if isinstance(exc, ServerUnavailable):
        return 503
    return 500


class Api:
    """The endpoints, bound to one client, its token table and its fan-out hub."""

    def __init__(self, client: Client, heartbeat: float = 15.0) -> None:
        self.client = client
        self.tokens = Tokens(client)
        self.hub = Hub(client)
        self.runs_watch = RunsWatch(client)
        self.heartbeat = heartbeat
        cfg = client.settings
        self.max_body = cfg.max_prompt_bytes + cfg.max_script_bytes + BODY_SLACK

    # -- plumbing ---------------------------------------------------------------------

    async def grant(self, request: Request, write: bool) -> Grant:
        token = request.cookies.get(COOKIE, "")
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise Refused(401, "use Authorization: Bearer TOKEN")
        elif write and token and not _is_json(request):
            # A cookie rides along on cross-site requests a form can make; a JSON
            # content type cannot be sent cross-site without a preflight we never answer.
            raise Refused(403, "a write with the session cookie must be application/json")
        if not token:
            raise Refused(401, "no token (Authorization: Bearer TOKEN)")
        grant = await run_in_threadpool(self.tokens.check, token.strip())
        if grant is None:
            raise Refused(401, "unknown or revoked token")
        if write and grant.read_only:
            raise Refused(403, f"token {grant.name} is read-only")
        return grant

    async def body(self, request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise Refused(413, f"request body is over {self.max_body} bytes")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.max_body:
                raise Refused(413, f"request body is over {self.max_body} bytes")
        try:
            parsed = json.loads(data or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused(400, f"body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise Refused(400, "body must be a JSON object")
        return parsed

    @staticmethod
    def run_id(request: Request) -> str:
        return check_run_id(str(request.path_params["run_id"]))

    def guard(self, write: bool, fn: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            response = await answer(request)
            metrics.http_request(fn.__name__, response.status_code)
            return response

        async def answer(request: Request) -> Response:
            try:
                await self.grant(request, write)
                return await fn(request)
            except Refused as exc:
                return error(exc.status, str(exc))
            except RunnerError as exc:
                if isinstance(exc, Damaged | ServerUnavailable):
                    log.warning("request_failed", extra={"path": request.url.path})
                return error(status_of(exc), str(exc))

        return endpoint

    # -- endpoints --------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def me(self, request: Request) -> Response:
        grant = await self.grant(request, write=False)
        return JSONResponse({"name": grant.name, "read_only": grant.read_only})

    async def login(self, request: Request) -> Response:
        """Check a token and keep it in an HttpOnly cookie (EventSource sends no headers)."""
        try:
            body = await self.body(request)
            token = str(body.get("token", ""))
            grant = await run_in_threadpool(self.tokens.check, token)
        except Refused as exc:
            return error(exc.status, str(exc))
        if grant is None:
            return error(401, "unknown or revoked token")
        response = JSONResponse({"name": grant.name, "read_only": grant.read_only})
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return response

    async def logout(self, request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE)
        return response

    async def list_runs(self, request: Request) -> Response:
        raw_status = request.query_params.get("status")
        raw_limit = request.query_params.get("limit", "50")
        try:
            status = Status(raw_status) if raw_status else None
        except ValueError:
            raise BadInput(f"not a status: {str(raw_status)[:40]!r}") from None
        if not raw_limit.isdigit():
            raise BadInput(f"limit must be a number, not {raw_limit[:40]!r}")
        records = await run_in_threadpool(self.client.runs, status, int(raw_limit))
        return JSONResponse({"runs": [r.model_dump(mode="json") for r in records]})

    async def live_runs(self, request: Request) -> Response:
        """The runs list as SSE: all of it first, then the runs that change."""
        raw_limit = request.query_params.get("limit", "50")
        if not raw_limit.isdigit():
            raise BadInput(f"limit must be a number, not {raw_limit[:40]!r}")
        stream = await self.runs_watch.open(int(raw_limit))  # 503 here, before the stream
        return EventSourceResponse(
            stream, ping=self.heartbeat, headers={"Cache-Control": "no-store"}
        )

    async def diff(self, request: Request) -> Response:
        text = await run_in_threadpool(self.client.diff, self.run_id(request))
        return JSONResponse({"diff": text})

    async def submit(self, request: Request) -> Response:
        body = await self.body(request)
        sub = submission(body)
        run_id = await run_in_threadpool(self.client.submit, sub)
        return JSONResponse({"id": run_id}, status_code=201)

    async def status(self, request: Request) -> Response:
        record = await run_in_threadpool(self.client.get, self.run_id(request))
        return JSONResponse(record.model_dump(mode="json"))

    async def transcript(self, request: Request) -> Response:
        messages = await run_in_threadpool(self.client.transcript, self.run_id(request))
        dumped = [m.model_dump(mode="json", exclude_none=True) for m in messages]
        return JSONResponse({"messages": dumped, "openai": [to_openai(m) for m in messages]})

    async def cancel(self, request: Request) -> Response:
        run_id = self.run_id(request)
        before = await run_in_threadpool(self.client.cancel, run_id)
        return JSONResponse({"id": run_id, "before": before.value})

    async def resume(self, request: Request) -> Response:
        """Body (optional): what to add to the limits, ``{"add_tokens": N, "add_time": "30m"}``."""
        run_id = self.run_id(request)
        adds = adds_from_json(await self.body(request))
        before = await run_in_threadpool(self.client.resume, run_id, adds)
        return JSONResponse({"id": run_id, "before": before.value})

    async def approve(self, request: Request) -> Response:
        run_id = self.run_id(request)
        before = await run_in_threadpool(self.client.approve, run_id)
        return JSONResponse({"id": run_id, "before": before.value})

    async def deny(self, request: Request) -> Response:
        """Body: ``{"reason": "..."}`` (optional), what the model reads as the tool's result."""
        run_id = self.run_id(request)
        reason = (await self.body(request)).get("reason") or ""
        if not isinstance(reason, str):
            raise BadInput('give the reason as {"reason": "..."}')
        before = await run_in_threadpool(self.client.deny, run_id, reason)
        return JSONResponse({"id": run_id, "before": before.value})

    async def events(self, request: Request) -> Response:
        run_id = self.run_id(request)
        after = request.headers.get("last-event-id") or request.query_params.get("after") or "0-0"
        if not STREAM_ID.fullmatch(after):
            raise BadInput(f"not an event id: {after[:40]!r} (expected MS-SEQ)")
        await run_in_threadpool(self.client.get, run_id)  # 404 before the stream opens
        sub = Subscription(self.hub, run_id, after)
        return EventSourceResponse(
            sse(sub), ping=self.heartbeat, headers={"Cache-Control": "no-store"}
        )

    async def workers(self, request: Request) -> Response:
        queue = str(request.path_params["queue"])
        return JSONResponse(
            {"workers": await run_in_threadpool(self.client.workers_serving, queue)}
        )

    async def page(self, request: Request) -> Response:
        html = (resources.files("runner.http") / "static" / "index.html").read_text()
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip() == "application/json"


def submission(body: dict[str, Any]) -> Submission:
    """A Submission from a JSON body (the client checks the values themselves)."""
    known = {
        *("prompt", "model", "queue", "max_steps", "script", "session", "key", "priority"),
        *LIMITS,
        "approve",
        *("system", "context_tokens"),  # issue 13
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadInput(f"unknown field: {unknown[0][:40]!r}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise BadInput('give the prompt as {"prompt": "..."}')
    for name in ("model", "queue", "script", "session", "key", "priority", "system"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadInput(f"{name} must be a string")
    steps = body.get("max_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)):
        raise BadInput("max_steps must be a whole number")
    approve = body.get("approve") or []
    if not isinstance(approve, list) or not all(isinstance(t, str) for t in approve):
        raise BadInput("approve must be a list of tool names")
    return Submission(
        prompt=prompt,
        model=body.get("model"),
        queue=body.get("queue"),
        max_steps=steps,
        script=body.get("script") or "",
        session=body.get("session") or "",
        approve=tuple(approve),
        **limits_from_json(body),
        key=body.get("key") or "",
        priority=body.get("priority") or "normal",
        system=body.get("system"),
        context_tokens=body.get("context_tokens"),  # checked by the client (check_window)
    )


async def sse(sub: Subscription) -> AsyncIterator[ServerSentEvent]:
    """The SSE stream of one subscription: committed events with ids, then ``end``.

    Deltas carry no ``id:``, so a browser's Last-Event-ID stays on the last committed event.
    """
    yield ServerSentEvent(comment="runner", retry=RETRY_MS)
    try:
        async for batch in sub.events():
            deltas = sum(isinstance(e, DeltaEvent) for e in batch)
            metrics.sse_delivered("delta", deltas)
            metrics.sse_delivered("committed", len(batch) - deltas)
            for event in batch:
                if isinstance(event, DeltaEvent):
                    yield ServerSentEvent(data=to_json(event))
                else:
                    yield ServerSentEvent(data=to_json(event), id=event.id)
    except RunnerError as exc:  # damaged, or Redis lost while replaying: say so, then close
        sub.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if sub.error:
        yield ServerSentEvent(data=json.dumps({"error": sub.error}), event="problem")
    else:
        yield ServerSentEvent(data=json.dumps({"last": sub.last}), event="end")


def build_app(client: Client, heartbeat: float = 15.0) -> Starlette:
    """The app over ``client``."""
    api = Api(client, heartbeat)

    def read(fn: Handler) -> Handler:
        return api.guard(False, fn)

    def write(fn: Handler) -> Handler:
        return api.guard(True, fn)

    routes = [
        Route("/", api.page),
        Route("/health", api.health),
        Route("/login", api.login, methods=["POST"]),
        Route("/logout", api.logout, methods=["POST"]),
        Route("/me", read(api.me)),
        Route("/runs", read(api.list_runs), methods=["GET"]),
        Route("/runs", write(api.submit), methods=["POST"]),
        Route("/runs/live", read(api.live_runs)),
        Route("/runs/{run_id}", read(api.status)),
        Route("/runs/{run_id}/transcript", read(api.transcript)),
        Route("/runs/{run_id}/events", read(api.events)),
        Route("/runs/{run_id}/diff", read(api.diff)),
        Route("/runs/{run_id}/cancel", write(api.cancel), methods=["POST"]),
        Route("/runs/{run_id}/resume", write(api.resume), methods=["POST"]),
        Route("/runs/{run_id}/approve", write(api.approve), methods=["POST"]),
        Route("/runs/{run_id}/deny", write(api.deny), methods=["POST"]),
        Route("/queues/{queue}/workers", read(api.workers)),
        *SessionEndpoints(api).routes(read, write),  # issue 14
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return error(status, str(getattr(exc, "detail", "")) or "not found")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(lambda: client.store)  # connect once, before any request
        yield
        await api.runs_watch.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found},
        lifespan=lifespan,
    )
    app.state.api = api
    return app

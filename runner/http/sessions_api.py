"""The endpoints for send (with its next turn), sessions, fork and purge.

Each calls :class:`runner.http.admin.Local`, the code the CLI runs over Redis, so the
answers and the one-line errors are the same; the guard in ``app`` maps the errors to
400, 404 and 409 as everywhere. Writes need a write token; ``GET /sessions`` a read one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runner.errors import BadInput
from runner.http.admin import Local
from runner.keys import check_session

if TYPE_CHECKING:
    from runner.http.app import Api, Handler


def whole(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"{name} must be a whole number")
    return value


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string")
    return value


class SessionEndpoints:
    """The handlers, over the app's client."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.local = Local(api.client)

    def session_name(self, request: Request) -> str:
        return check_session(str(request.path_params["name"]))

    async def send(self, request: Request) -> Response:
        """``{"message": "..."}``; to an ended run it starts the session's next turn (201,
        ``next`` is the new run), unless ``"continue": false`` (then 409 as before)."""
        run_id = self.api.run_id(request)
        body = await self.api.body(request)
        message = body.get("message")
        if not isinstance(message, str):
            raise BadInput('give the message as {"message": "..."}')
        if body.get("continue", True) is False:
            status = await run_in_threadpool(self.api.client.send, run_id, message)
            return JSONResponse({"id": run_id, "status": status.value})
        sent = await run_in_threadpool(self.local.send_or_continue, run_id, message)
        if not sent.next_id:
            return JSONResponse({"id": run_id, "status": sent.status})
        reply = {"id": run_id, "next": sent.next_id, "session": sent.session}
        return JSONResponse(reply, status_code=201)

    async def sessions(self, request: Request) -> Response:
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            raise BadInput(f"limit must be a number from 1 to 10000, not {raw[:40]!r}")
        found = await run_in_threadpool(self.local.sessions, int(raw))
        return JSONResponse({"sessions": [s.to_dict() for s in found]})

    async def rename(self, request: Request) -> Response:
        """``{"name": NEW}``: the session's turns follow it."""
        old = self.session_name(request)
        new = text(await self.api.body(request), "name")
        turns = await run_in_threadpool(self.local.rename_session, old, new)
        return JSONResponse({"name": new, "turns": turns})

    async def delete(self, request: Request) -> Response:
        name = self.session_name(request)
        await self.api.body(request)  # size and JSON checked like every write
        gone = await run_in_threadpool(self.local.delete_session, name)
        return JSONResponse({"name": name, "purged": gone})

    async def fork(self, request: Request) -> Response:
        """``{"at": N, "session": NAME}`` (session optional): 201 with the new run."""
        run_id = self.api.run_id(request)
        body = await self.api.body(request)
        at, session = whole(body, "at"), text(body, "session")
        done = await run_in_threadpool(self.local.fork, run_id, at, session)
        return JSONResponse({"id": done.run_id, "at": done.at, "asked": done.asked}, 201)

    async def purge_run(self, request: Request) -> Response:
        run_id = self.api.run_id(request)
        await self.api.body(request)
        keys = await run_in_threadpool(self.local.purge_run, run_id)
        return JSONResponse({"runs": [run_id], "keys": keys, "kept": []})

    async def purge_older(self, request: Request) -> Response:
        """``{"older_than": SECONDS}``: every ended run idle that long."""
        seconds = whole(await self.api.body(request), "older_than")
        done = await run_in_threadpool(self.local.purge_older, seconds)
        return JSONResponse({"runs": done.runs, "keys": done.keys, "kept": done.kept})

    def routes(
        self, read: Callable[[Handler], Handler], write: Callable[[Handler], Handler]
    ) -> list[Route]:
        return [
            Route("/runs/{run_id}/send", write(self.send), methods=["POST"]),
            Route("/runs/{run_id}/fork", write(self.fork), methods=["POST"]),
            Route("/runs/{run_id}/purge", write(self.purge_run), methods=["POST"]),
            Route("/purge", write(self.purge_older), methods=["POST"]),
            Route("/sessions", read(self.sessions)),
            Route("/sessions/{name}/rename", write(self.rename), methods=["POST"]),
            Route("/sessions/{name}/delete", write(self.delete), methods=["POST"]),
        ]

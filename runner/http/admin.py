"""Sessions, forks, purges and ``send`` with its next turn, one interface for two paths.

:class:`Local` does them over Redis (the CLI without RUNNER_API_URL, and ``runner
serve`` answering the HTTP endpoints); :class:`runner.http.remote.RemoteClient` does
the same through those endpoints. :func:`admin_for` picks one for a client, so a
command prints and exits the same either way. Nothing here imports the serve extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from runner import forking, purge, session_admin
from runner.client import Client
from runner.connection import server_errors
from runner.errors import WrongState
from runner.forking import Forked
from runner.purge import Purged
from runner.session_admin import SessionInfo

T = TypeVar("T")


@dataclass(frozen=True)
class Sent:
    """What ``send`` did: taken in by a live run (``next_id`` empty), or the ended run's
    session continued in a new run ``next_id``."""

    next_id: str = ""
    session: str = ""
    status: str = ""  # the live run's status when it took the message in


class Admin(Protocol):
    """What the session, fork and purge commands (and ``send``) need."""

    def send_or_continue(self, run_id: str, text: str) -> Sent: ...

    def sessions(self, limit: int = 50) -> list[SessionInfo]: ...

    def rename_session(self, old: str, new: str) -> int: ...

    def delete_session(self, name: str) -> int: ...

    def fork(self, run_id: str, at: int, session: str = "") -> Forked: ...

    def purge_run(self, run_id: str) -> int: ...

    def purge_older(self, age_seconds: int) -> Purged: ...


class Local:
    """The operations on the client's own server; Redis errors become RunnerErrors."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @staticmethod
    def _redis(fn: Callable[[], T]) -> T:
        with server_errors():
            return fn()

    def send_or_continue(self, run_id: str, text: str) -> Sent:
        """A message to a live run; to an ended run, the first message of its next turn."""
        try:
            status = self.client.send(run_id, text)
        except WrongState:
            new_id, session = self._redis(
                lambda: session_admin.next_turn(self.client, run_id, text)
            )
            return Sent(new_id, session)
        return Sent(status=status.value)

    def sessions(self, limit: int = 50) -> list[SessionInfo]:
        c = self.client
        return self._redis(lambda: session_admin.list_sessions(c.store, c.settings, limit))

    def rename_session(self, old: str, new: str) -> int:
        return self._redis(lambda: session_admin.rename(self.client.store, old, new))

    def delete_session(self, name: str) -> int:
        c = self.client
        return self._redis(lambda: session_admin.delete(c.store, c.rq, c.settings, name))

    def fork(self, run_id: str, at: int, session: str = "") -> Forked:
        c = self.client
        return self._redis(lambda: forking.fork(c.store, c.rq, c.settings, run_id, at, session))

    def purge_run(self, run_id: str) -> int:
        c = self.client
        return self._redis(lambda: purge.purge_run(c.store, c.rq, c.settings, run_id))

    def purge_older(self, age_seconds: int) -> Purged:
        c = self.client
        return self._redis(lambda: purge.purge_older(c.store, c.rq, c.settings, age_seconds))


def admin_for(client: Client) -> Admin:
    """The client itself when it goes through ``runner serve``, else :class:`Local`."""
    if client.settings.api_url:
        from runner.http.remote import RemoteClient

        if isinstance(client, RemoteClient):
            return client
    return Local(client)

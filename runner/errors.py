"""Every error runner raises on purpose.

RunnerError                 base; the CLI prints one line ``error: message``, exits ``exit_code``
├── BadInput                exit 2: usage, malformed id, bad script, prompt too large
│   ├── NoSuchRun           exit 2: a well-formed id that names no run
│   └── WrongState          exit 2: the run is not in a state that allows it (HTTP 409)
├── AccessDenied            exit 2: the API refused the token (RUNNER_API_TOKEN)
├── ServerUnavailable       exit 1: Redis could not be reached (after retries)
├── EmbeddedServerError     exit 1: the embedded Valkey could not be started
├── UnsafeServer            exit 2: a worker refuses a server configured to lose runs
├── CorruptEvent            exit 1: a stream entry that does not parse as an event
├── Damaged                 exit 1: a run whose record or stream is missing or unreadable
├── ModelError              the model provider failed (the run fails with its message)
├── ToolError               a tool call was refused (the model reads ``error: message``)
├── BenchError              exit 1: ``runner bench`` could not complete
├── WorkspaceError          exit 1: a workspace could not be stored, restored or pulled
└── StaleEpoch              a fenced write from an attempt that no longer owns the run
"""

from __future__ import annotations


class RunnerError(Exception):
    """Something went wrong in runner."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class BadInput(RunnerError):
    """The input was not valid."""

    exit_code = 2


class NoSuchRun(BadInput):
    """No run has that id."""


class WrongState(BadInput):
    """The run is not in a state that allows this."""


class AccessDenied(RunnerError):
    """The API refused the token."""

    exit_code = 2


class ServerUnavailable(RunnerError):
    """The Redis server could not be reached."""


class EmbeddedServerError(RunnerError):
    """The embedded Valkey server could not be started."""


class UnsafeServer(RunnerError):
    """The server is configured in a way that loses runs."""

    exit_code = 2


class CorruptEvent(RunnerError):
    """A stream entry is not a valid event."""


class Damaged(RunnerError):
    """A run's record or stream is missing or unreadable."""


class ModelError(RunnerError):
    """The model provider failed."""


class ToolError(RunnerError):
    """The tool call was refused."""


class WorkspaceError(RunnerError):
    """A workspace could not be stored, restored or pulled."""


class StaleEpoch(RunnerError):
    """This attempt no longer owns the run; another attempt has taken it over."""


class BenchError(RunnerError):
    """The benchmark could not complete."""

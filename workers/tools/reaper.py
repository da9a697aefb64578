"""The shell tool's supervisor: a child subreaper between the turn and the command.

Run as a script (``python -I -S reaper.py PARENT_PID COMMAND...``, stdlib only, so it
starts in milliseconds and imports nothing of runner). It

- dies with the turn: PR_SET_PDEATHSIG delivers SIGTERM when the turn's process (its
  parent) dies, even by SIGKILL, and SIGTERM makes it clean up;
- is a child subreaper (PR_SET_CHILD_SUBREAPER): whatever the command starts and
  orphans, ``setsid`` and double forks included, is re-parented to it instead of init;
- runs the command in a new process group, and when the command ends, or on SIGTERM,
  SIGHUP or SIGINT, SIGKILLs that group and then every descendant it still has, until
  it has none; then exits with the command's own status (or dies of its signal).

What it cannot catch: a descendant of a supervisor that is itself SIGKILLed (the OOM
killer, an operator's ``kill -9``) is re-parented to init and lives on; only a container
or cgroup bounds that.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class _Stopped(Exception):
    pass


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _children() -> list[int]:
    """Live children of this process (orphaned descendants are re-parented here)."""
    me = os.getpid()
    try:  # this process has one thread, so its children are that thread's
        with open(f"/proc/{me}/task/{me}/children", "rb") as f:
            return [int(pid) for pid in f.read().split()]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: scan every process
        pass
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            pids.append(int(entry))
    return pids


def _kill(pid: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)


def _reap_all(pgid: int) -> None:
    """SIGKILL the command's group (if started), then every descendant, until none is left."""
    if pgid > 0:
        _kill(pgid, group=True)
    while True:
        for pid in _children():
            _kill(pid)
        try:
            os.waitpid(-1, 0)  # each death may re-parent that process's children here
        except ChildProcessError:
            return
        except InterruptedError:  # pragma: no cover - PEP 475 retries; belt and braces
            continue


def _spawn(argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # the command: its own group, dies with this supervisor
        try:
            os.setpgid(0, 0)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            for sig in (*_STOP_SIGNALS, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.execvp(argv[0], argv)  # PATH is the one the command was given
        except BaseException as exc:
            os.write(2, f"cannot run {argv[0]}: {exc}\n".encode())
        os._exit(127)
    return pid


def _wait_for(pid: int) -> int:
    """Wait for ``pid``, reaping orphans meanwhile; its wait status."""
    while True:
        got, status = os.waitpid(-1, 0)
        if got == pid:
            return status


def main(argv: list[str]) -> int:
    parent = int(argv[1])
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _raise_stopped)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the turn died before the death signal was armed
        return 1
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    pid = 0
    try:
        pid = _spawn(argv[2:])
        status = _wait_for(pid)
    except _Stopped:
        status = -1
    finally:
        for sig in _STOP_SIGNALS:  # from here on, nothing may cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        _reap_all(pid)
    if status < 0:
        return 128 + signal.SIGTERM
    if os.WIFSIGNALED(status):
        died_of = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP have no handler
            signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
        return 128 + died_of
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Whether a process exists, by pid: the one check the embedded server, worker names and
the health probe share."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` (> 0) exists, also one this process may not signal."""
    if pid <= 0:  # 0 and negatives name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

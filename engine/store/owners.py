"""Which process runs a training run, and whether that process is still alive.

A run records `current_owner()`, '<host>:<pid>:<start>' (the start is the process's start time in
clock ticks since boot, from /proc, so a pid reused by another program is not mistaken for the
run's process). `owner_gone(owner)` is True only when the owner is on this host and its process
has ended; a run of another host (a shared PostgreSQL project), or of an mlic from before owners
were recorded, is never declared gone.
"""

from __future__ import annotations

import os
import socket


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def current_owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def owner_gone(owner: str | None) -> bool:
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, start = parts[0], int(parts[1]), parts[2]
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return bool(start) and _start_ticks(pid) not in ("", start)

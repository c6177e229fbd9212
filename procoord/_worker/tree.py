"""A process's name in ``ps`` and control over the processes it starts (Linux; elsewhere
these do nothing).

psutil is imported only where it is needed (when a worker ends with processes of its
own left, or where the kernel has no list of a process's children), so a launcher and
its workers start without it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ("become_subreaper", "children", "descendants", "end_descendants", "kill_tree", "set_title")

_PR_SET_NAME = 15
_PR_SET_CHILD_SUBREAPER = 36
_COMM_MAX = 15  # a thread's name holds 16 bytes with the terminating NUL

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int | bytes) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return bool(_libc.prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Make processes orphaned below this one its children (not init's), so it can end them."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_title(name: str, title: str | None = None) -> None:
    """Set the process's name (``comm``, as ``top`` and ``ps -o comm`` show it) to
    ``name`` and, if given, its command line (as ``ps -f`` shows it) to ``title``.

    The command line is rewritten in place in the process's argument area, so it can be
    at most as long as the one the process was started with; it is cut to fit.
    """
    _prctl(_PR_SET_NAME, name.encode()[:_COMM_MAX])
    if title is None or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        # arg_start and arg_end are fields 48 and 49 of stat(5); ``fields`` starts at field 3.
        arg_start, arg_end = int(fields[45]), int(fields[46])
        size = arg_end - arg_start
        if size < 2:
            return
        text = title.encode()[: size - 2]
        # A NUL after the title and a non-NUL last byte: Linux then shows the area up to
        # that NUL as the whole command line (as setproctitle(3) does it).
        data = text + b"\0" + b" " * (size - len(text) - 1)
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(data)
    except (OSError, ValueError, IndexError):
        pass


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children, from /proc/PID/task/*/children (a scan of every
    process where the kernel does not have it)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(p) for p in f.read().split())
        except FileNotFoundError:
            import psutil

            try:
                return [p.pid for p in psutil.Process(pid).children()]
            except psutil.Error:
                return []
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    """The pids below ``pid``, however deep, parents before their children."""
    found: list[int] = []
    todo = children(pid)
    while todo:
        found.extend(todo)
        todo = [c for p in todo for c in children(p)]
    return found


def end_descendants(grace_s: float) -> None:
    """End every process this one started, however deep (and, as a subreaper, those
    orphaned below it): SIGTERM first, SIGKILL for those still there after ``grace_s``."""
    pids = descendants(os.getpid())
    if not pids:
        return
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        _signal(proc.pid, signal.SIGKILL)
    # Started meanwhile, or orphaned to us by what was just ended.
    for pid in descendants(os.getpid()):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything below it (the caller reaps what are its children)."""
    for target in [pid, *descendants(pid)]:
        _signal(target, signal.SIGKILL)

"""Starting procoord's launcher interpreter (``python -m procoord._worker.launcher``).

Standard library only, so that the process's seed (see ``procoord.backends._seed``)
can be started before the rest of procoord is imported: :func:`start_seed_early` runs
when a coordinator class is first looked up, and the seed's interpreter then starts
while this process imports the coordinator. The seed is taken over by the first
coordinator that needs a launcher; one nobody took is ended at exit.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading

__all__ = ("LAUNCHER_MODULE", "start_launcher", "start_seed_early", "take_early_seed")

LAUNCHER_MODULE = "procoord._worker.launcher"

# The directory procoord is imported from, so a launcher imports the same procoord.
_IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def start_launcher(*, seed: bool = False) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a launcher as a fresh interpreter; return it and our end of its socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_IMPORT_ROOT, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", LAUNCHER_MODULE, "--parent", str(os.getpid()), "--fd", str(theirs.fileno())]
        # Its own session: a Ctrl-C at the terminal, or a signal to the caller's
        # process group, reaches neither the launcher nor the workers.
        proc = subprocess.Popen(
            [*argv, "--seed"] if seed else argv,
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, ours


# A seed started ahead of need, not yet taken: the process, our end of its socket and
# the pid of the process that started it (a fork of that process inherits it).
_early: tuple[subprocess.Popen[bytes], socket.socket, int] | None = None
_early_lock = threading.Lock()


def start_seed_early() -> None:
    """Start the seed now, in the background, unless one waits already (or this process
    is a procoord launcher or worker, which never needs one for itself)."""
    global _early
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == LAUNCHER_MODULE:
        return
    with _early_lock:
        if _early is not None and _early[2] == os.getpid():
            return
        _early = None
        try:
            proc, sock = start_launcher(seed=True)
        except OSError:
            return  # started again, with its error told, when a launcher is needed
        _early = proc, sock, os.getpid()


def take_early_seed() -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """The seed started early by this process, if it is still there; the caller owns it."""
    global _early
    with _early_lock:
        early, _early = _early, None
    if early is None:
        return None
    proc, sock, owner = early
    if owner != os.getpid():
        sock.close()  # a fork's inheritance: the seed is its parent's
        return None
    if proc.poll() is not None:
        sock.close()
        return None
    return proc, sock


@atexit.register
def _end_early_seed() -> None:
    """At exit: a seed nobody took runs nothing, so it is simply ended."""
    early = take_early_seed()
    if early is not None:
        proc, sock = early
        sock.close()
        proc.kill()
        proc.wait()

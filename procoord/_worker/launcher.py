"""procoord's worker launcher: ``python -m procoord._worker.launcher --parent PID --fd FD [--seed]``.

A fresh interpreter started by procoord in the coordinator's process. It imports the
worker side only (no coordinator, no event loop of the parent's) and then, single
threaded and without an event loop, forks one worker per SPAWN request that arrives on
its socket (``FD``, one end of a connected pair: nothing listens). A forked worker
shares the pages the launcher preloaded, and the user's main module is never imported:
processors and tasks from ``__main__`` travel by value.

With ``--seed`` it is the process's seed: it runs no workers and forks, per
FORK_LAUNCHER request, a launcher of the same clean state for one backend, in a few
milliseconds instead of a fresh interpreter's start. A forked launcher leads a session
of its own; one that dies or stops affects neither the seed nor the other launchers.

A launcher keeps one spare: a fork made ahead of the next SPAWN request, already in a
session of its own, that only waits on a socket for the worker's pipe ends; a request
hands them over and forks the next spare, so a worker's start does not wait for a fork.

Each worker leads a session (and process group) of its own, and the launcher is a
subreaper: whatever a worker leaves behind when it ends (its process group, and
processes that left it with ``setsid``) is ended when the launcher reaps the worker,
before the parent hears of the exit (an EXITED record). When the parent goes (the
socket's end of file), the launcher ends every worker it still has and exits.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
import traceback
from typing import NamedTuple

from ..errors import describe_limit
from . import pipe, protocol, tree
from .protocol import ForkLauncher, Spawn

__all__ = ("main",)

# At a shutdown, workers get this long to end on SIGTERM (all at once), then SIGKILL.
SHUTDOWN_GRACE_S = 1.0

# At a shutdown, the most seconds before the launcher exits anyway.
SHUTDOWN_LIMIT_S = 3


def main(argv: list[str] | None = None) -> None:
    """Run the launcher until its parent goes (``--parent`` only names it in ``ps``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        fd = int(args[args.index("--fd") + 1])
    except (ValueError, IndexError):
        sys.exit("usage: python -m procoord._worker.launcher --parent PID --fd FD [--seed] (started by procoord)")
    seed = "--seed" in args
    tree.set_title("procoord seed" if seed else "procoord launch")
    _Launcher(socket.socket(fileno=fd), seed=seed).serve()
    # Done: no interpreter teardown (the parent may be waiting for this exit).
    _flush()
    os._exit(0)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def _ignore(signum: int, frame: object) -> None:
    pass


class _Spare(NamedTuple):
    """A fork waiting to become the next worker, and the launcher's end of its socket."""

    pid: int
    sock: socket.socket


class _Launcher:
    def __init__(self, sock: socket.socket, *, seed: bool) -> None:
        self.sock = sock
        # The seed's children are launchers: when one ends, what it started lives on.
        self.seed = seed
        self.workers: set[int] = set()
        self.spare: _Spare | None = None
        self.me = os.getpid()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, _ignore)  # a handler, so the wakeup fd hears of it
        # A handler rather than SIG_IGN: what a worker starts with exec gets the default.
        signal.signal(signal.SIGINT, _ignore)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if not seed:
            tree.become_subreaper()
        # Freeze what is loaded now: the collector then never touches (and so never
        # un-shares) these pages in the forked workers.
        gc.freeze()

    def serve(self) -> None:
        watcher = select.poll()
        watcher.register(self.sock.fileno(), 1)  # POLLIN
        watcher.register(self.wake_r, 1)
        if not self.seed:
            self._fork_spare()
        while True:
            for fd, _events in watcher.poll():
                if fd == self.wake_r:
                    _drain(self.wake_r)
                elif not self._take_request():
                    self._shutdown()
                    return
            self._reap()

    # -- requests -------------------------------------------------------------------

    def _take_request(self) -> bool:
        """Serve one request; False once the parent is gone."""
        try:
            data, fds, flags, _ = socket.recv_fds(self.sock, protocol.MAX_RECORD, 2)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        record = protocol.decode(data)
        if isinstance(record, ForkLauncher) and len(fds) == 1 and not flags & socket.MSG_CTRUNC:
            return self._fork_launcher(record, fds[0])
        if not isinstance(record, Spawn | ForkLauncher):
            for fd in fds:
                os.close(fd)
            return True
        if flags & socket.MSG_CTRUNC or len(fds) != 2 or isinstance(record, ForkLauncher):
            for fd in fds:
                os.close(fd)
            exc = OSError(24, "the launcher could not receive the worker's pipes")  # EMFILE
            return self._reply(protocol.encode_spawn_failed(record.request, exc.errno or 0, describe_limit(exc)))
        return self._spawn(record, data, fds[0], fds[1])

    def _spawn(self, record: Spawn, data: bytes, rfd: int, wfd: int) -> bool:
        pid = self._hand_to_spare(data, rfd, wfd)
        if pid is None:
            gc.freeze()
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(rfd)
                os.close(wfd)
                return self._reply(protocol.encode_spawn_failed(record.request, exc.errno or 0, describe_limit(exc)))
            if pid == 0:
                code = 1
                try:
                    self._leave()
                    code = self._become_worker(record, rfd, wfd)
                finally:
                    os._exit(code)
        os.close(rfd)
        os.close(wfd)
        self.workers.add(pid)
        answered = self._reply(protocol.encode_spawned(record.request, pid))
        if answered and self.spare is None:
            self._fork_spare()
        return answered

    # -- the spare ------------------------------------------------------------------

    def _fork_spare(self) -> None:
        """Fork the next spare; without one (out of descriptors or processes) the next
        request forks its worker itself."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError:
            return
        gc.freeze()
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return
        if pid == 0:
            code = 1
            try:
                ours.close()
                code = self._wait_as_spare(theirs)
            finally:
                os._exit(code)
        theirs.close()
        self.spare = _Spare(pid, ours)

    def _hand_to_spare(self, data: bytes, rfd: int, wfd: int) -> int | None:
        """Give a SPAWN request and its pipe ends to the spare; its pid, or None when
        there is no spare (or it is gone)."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        try:
            socket.send_fds(spare.sock, [data], [rfd, wfd])
        except OSError:
            _kill(spare.pid)  # reaped with the others; it was never a worker
            return None
        finally:
            spare.sock.close()
        return spare.pid

    def _drop_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            spare.sock.close()
            _kill(spare.pid)

    def _wait_as_spare(self, sock: socket.socket) -> int:
        """In the spare: wait for a SPAWN request and become its worker. Returns the
        exit code (0 when the launcher went first)."""
        self._leave()
        tree.set_title("procoord spare")  # its command line stays the launcher's until it is a worker
        try:
            data, fds, _, _ = socket.recv_fds(sock, protocol.MAX_RECORD, 2)
        except OSError:
            return 0
        finally:
            sock.close()
        try:
            record = protocol.decode(data) if data and len(fds) == 2 else None
        except ValueError:
            record = None
        if not isinstance(record, Spawn):
            for fd in fds:
                os.close(fd)
            return 0
        return self._become_worker(record, fds[0], fds[1])

    def _fork_launcher(self, record: ForkLauncher, fd: int) -> bool:
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fd)
            return self._reply(protocol.encode_spawn_failed(record.request, exc.errno or 0, describe_limit(exc)))
        if pid == 0:
            code = 1
            try:
                self._leave()
                tree.set_title("procoord launch", _launcher_title(sys.orig_argv))
                _Launcher(socket.socket(fileno=fd), seed=False).serve()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(fd)
        self.workers.add(pid)
        return self._reply(protocol.encode_spawned(record.request, pid))

    def _leave(self) -> None:
        """In a fork: let go of this launcher's socket, wake-up pipe, spare and SIGCHLD
        handler, and lead a session of its own."""
        self.sock.close()
        if self.spare is not None:
            self.spare.sock.close()
        signal.set_wakeup_fd(-1)
        os.close(self.wake_r)
        os.close(self.wake_w)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if not self.seed:
            tree.become_subreaper()

    def _reply(self, data: bytes) -> bool:
        try:
            self.sock.send(data)
        except OSError:
            return False
        return True

    # -- in the forked worker ---------------------------------------------------------

    def _become_worker(self, record: Spawn, rfd: int, wfd: int) -> int:
        """Turn a fork that has left the launcher into a worker: the parent's
        environment, then the worker's loop. Returns its exit code."""
        tree.set_title(record.name, record.title)
        try:
            setup = protocol.read_setup(rfd)
        except EOFError:
            return 0  # the parent gave up on this worker before it was set up
        _set_environ(setup.environ)
        sys.path[:] = setup.sys_path
        try:
            os.chdir(setup.cwd)
        except OSError:
            pass
        try:
            pipe.worker_main(rfd, wfd, setup.spec, setup.sample_interval_s, setup.shared)
            code = 0
        except SystemExit as exc:  # outside do_work (which fails only its task)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        _flush()
        return code

    # -- reaping --------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap every child that has ended; a worker's leftovers are ended first."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            if self.spare is not None and pid == self.spare.pid:
                self.spare.sock.close()
                self.spare = None
            if pid in self.workers and not self.seed:
                # The worker is a zombie, so its pid (the group's id) is not reused yet.
                _killpg(pid)
                self._end_orphans()
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            if pid in self.workers:
                self.workers.discard(pid)
                if not self.seed:
                    self._reply(protocol.encode_exited(pid, status))

    def _end_orphans(self) -> None:
        """End children that are not workers: processes orphaned by a worker that ended."""
        spare = None if self.spare is None else self.spare.pid
        for child in tree.children(self.me):
            if child not in self.workers and child != spare:
                tree.kill_tree(child)

    def _shutdown(self) -> None:
        """The parent is gone: end every worker and what it started, then exit (the
        seed's launchers hear of it on their own sockets)."""
        if self.seed:
            return
        self._drop_spare()
        signal.alarm(SHUTDOWN_LIMIT_S)  # a backstop: SIGALRM's default ends the launcher
        for pid in self.workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        watcher = select.poll()
        watcher.register(self.wake_r, select.POLLIN)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while self.workers and (left := deadline - time.monotonic()) > 0:
            watcher.poll(max(1, int(left * 1000)))  # woken by SIGCHLD
            _drain(self.wake_r)
            self._reap()
        for pid in self.workers:
            _killpg(pid)
            tree.kill_tree(pid)
        while True:
            self._end_orphans()
            try:
                os.wait()
            except ChildProcessError:
                return
            except InterruptedError:
                continue


def _launcher_title(seed_argv: list[str]) -> str:
    """A forked launcher's command line: the seed's, without ``--seed`` and ``--fd``
    (its socket came another way)."""
    args = [arg for arg in seed_argv if arg != "--seed"]
    if "--fd" in args:
        at = args.index("--fd")
        del args[at : at + 2]
    return " ".join(args)


def _set_environ(wanted: dict[str, str]) -> None:
    """Make os.environ ``wanted``, touching only what differs (each change is a call
    into the C library)."""
    for key in [key for key in os.environ if key not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


if __name__ == "__main__":
    main()

"""Processors and fault objects used by the tests; they run in worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from procoord import TaskProcessor


class Counter(TaskProcessor):
    """Records every task it sees, in order (state persists across tasks)."""

    def __init__(self, name: str = "counter") -> None:
        self.name = name
        self.seen: list[Any] = []

    async def do_work(self, task: Any) -> Any:
        self.seen.append(task)
        if isinstance(task, tuple) and task[0] == "hold":
            return hold(task[1:])
        if task == "history":
            return list(self.seen)
        if task == "pid":
            return os.getpid()
        return task


class SyncCounter(TaskProcessor):
    def __init__(self) -> None:
        self.count = 0

    def do_work(self, task: Any) -> Any:
        self.count += 1
        if task == "count":
            return self.count
        return task


def echo(x: Any) -> Any:
    return x


def double(x: int) -> int:
    return x * 2


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def getpid(_: Any = None) -> int:
    return os.getpid()


def sleeper(seconds: float) -> float:
    time.sleep(seconds)  # wait-ok: the task's workload
    return seconds


def spin(seconds: float) -> float:
    """Burn CPU for ``seconds``."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return seconds


class Boom(Exception):
    pass


class StubbornError(Exception):
    """An exception whose __init__ cannot be re-run on unpickling."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"stubborn {a} {b}")


def raiser(kind: str) -> Any:
    if kind == "value":
        raise ValueError("bad value")
    if kind == "boom":
        raise Boom("boom")
    if kind == "stubborn":
        raise StubbornError(1, 2)
    if kind == "lock":
        return threading.Lock()
    if kind == "exit":
        sys.exit(3)
    if kind == "_exit":
        os._exit(42)
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segv":
        import ctypes

        ctypes.string_at(0)
    return kind


def printer(text: str) -> str:
    print(text * 100)
    print(text * 100, file=sys.stderr)
    sys.stdout.flush()
    return text


class LockHolder:
    """Built by a factory inside the worker: holds things that cannot be pickled."""

    def __init__(self, label: str, scale: int = 1) -> None:
        self.label = label
        self.scale = scale
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def do_work(self, task: int) -> tuple[str, int, int]:
        with self.lock:
            return self.label, task * self.scale, self.pid


def failing_factory() -> Any:
    raise RuntimeError("factory refuses")


def dying_factory() -> Any:
    os._exit(7)


class BadUnpickle:
    """A processor whose rebuilding in the worker raises."""

    def __reduce__(self) -> Any:
        return (failing_factory, ())

    def do_work(self, task: Any) -> Any:
        return task


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("I refuse to be pickled")


def fail_on_unpickle() -> Any:
    raise ValueError("cannot rebuild me here")


class FailsOnUnpickle:
    """Pickles fine in the parent, raises when unpickled in the worker."""

    def __reduce__(self) -> Any:
        return (fail_on_unpickle, ())


def signal_beacon(path: str) -> None:
    """Tell the test waiting on the FIFO at ``path`` that we got here."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def wait_beacon(path: str) -> None:
    """Block until the test writes to the FIFO at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 1)
    finally:
        os.close(fd)


def hold(paths: tuple[str, str]) -> str:
    """Signal ``started``, then block (sync) until ``release`` is signalled."""
    started, release = paths
    signal_beacon(started)
    wait_beacon(release)
    return "released"


def started_then(args: tuple[str, str, Any]) -> Any:
    """Signal ``started``, then run ``raiser(kind)``; for crashes mid-task."""
    started, kind, value = args
    signal_beacon(started)
    if kind == "spin":
        return spin(value)
    return raiser(kind)


async def async_hold(paths: tuple[str, str]) -> str:
    """Signal ``started``, then wait until cancelled, reporting the cancellation."""
    started, cancelled = paths
    signal_beacon(started)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        signal_beacon(cancelled)
        raise
    return "never"


def hold_gil(seconds: float) -> float:
    """Burn CPU for ``seconds`` without letting another thread of the process run (as
    one long C call would): the worker's sampler cannot send meanwhile."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        return spin(seconds)
    finally:
        sys.setswitchinterval(interval)


def spin_then(seconds: float, task: Any) -> Any:
    """Burn ``seconds`` of CPU, then return the task."""
    spin(seconds)
    return task


def spin_then_square(args: tuple[float, int]) -> int:
    seconds, value = args
    spin(seconds)
    return value * value


def spin_until(paths: tuple[str, str]) -> str:
    """Signal ``started``, then burn CPU until the file ``stop`` exists."""
    started, stop = paths
    signal_beacon(started)
    n = 0
    while True:
        n += 1
        if n % 10000 == 0 and os.path.exists(stop):
            return "spun"


# -- the crash matrix's fault injection -------------------------------------------


def do_fault(how: str) -> Any:
    """Fail the way ``how`` says, wherever this runs."""
    if how == "exception":
        raise ValueError("injected fault")
    if how == "stubborn":
        raise StubbornError(1, 2)
    if how == "sys.exit":
        sys.exit(5)
    if how == "os._exit":
        os._exit(6)
    if how == "sigsegv":
        os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError(f"unknown fault {how!r}")


class FaultAtPickle:
    """Fails while being pickled."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> Any:
        do_fault(self.how)
        return (str, ("unreachable",))


class FaultAtUnpickle:
    """Pickles fine; fails while being unpickled."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> Any:
        return (do_fault, (self.how,))


BIG_RESULT_BYTES = 200 * 2**20


def faulty(spec: tuple[str, str]) -> Any:
    """A processor that fails at the stage and in the way ``spec`` names."""
    stage, how = spec
    if stage == "run":
        return do_fault(how)
    if stage == "pickle-result":
        return FaultAtPickle(how)
    if stage == "unpickle-result":
        return FaultAtUnpickle(how)
    if stage == "big-result":
        return b"x" * BIG_RESULT_BYTES
    if stage == "ok":
        return how
    raise AssertionError(stage)


class FaultyProcessor:
    """A processor whose rebuilding in the worker fails as ``how`` says."""

    def __init__(self, how: str) -> None:
        self.how = how

    def __reduce__(self) -> Any:
        return (do_fault, (self.how,))

    def do_work(self, task: Any) -> Any:
        return task


def build_once(marker: str) -> Any:
    """A factory that works the first time only (it leaves ``marker`` behind)."""
    if os.path.exists(marker):
        raise RuntimeError("this factory works only once")
    open(marker, "w").close()
    return double


class Blob:
    """A buffer that pickles out-of-band with protocol 5, as numpy arrays do."""

    def __init__(self, data: bytearray | memoryview) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: Any) -> Any:
        if protocol >= 5:
            import pickle

            return (Blob, (pickle.PickleBuffer(self.data),))
        return (Blob, (bytes(self.data),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Blob) and bytes(self.data) == bytes(other.data)

    __hash__ = None  # type: ignore[assignment]


def blob_sum(blob: Blob) -> tuple[int, Blob]:
    """The byte sum of a blob, and a new blob twice as long (out-of-band both ways)."""
    data = bytes(blob.data)
    return sum(data[::4096]), Blob(bytearray(data * 2))


def blocked_factory(path: str) -> Any:
    """A factory that waits for a signal on the FIFO at ``path`` before building."""
    wait_beacon(path)
    return double


def loaded_modules(_: Any = None) -> list[str]:
    """The procoord modules loaded in this process."""
    return sorted(name for name in sys.modules if name == "procoord" or name.startswith("procoord."))


def is_loaded(name: str) -> bool:
    """Whether module ``name`` is loaded in this process."""
    return name in sys.modules


class Spawner:
    """Starts processes of its own (``sleep 600``) and ends itself in various ways."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def do_work(self, task: tuple[str, Any]) -> Any:
        what, arg = task
        if what == "spawn":  # arg: whether the child leaves for a session of its own
            child = subprocess.Popen(["sleep", "600"], start_new_session=arg)
            self.children.append(child)
            return child.pid
        if what == "exit":
            os._exit(arg)
        if what == "hang":
            threading.Event().wait()
        if what == "ids":
            return os.getpid(), os.getpgid(0), os.getsid(0), os.getppid()
        if what == "env":
            return {name: os.environ.get(name) for name in arg}
        if what == "kill_parent":
            parent = os.getppid()
            os.kill(parent, signal.SIGKILL)
            return parent
        raise ValueError(what)


class BaseRaiser(TaskProcessor):
    """Raises a BaseException that is not an Exception when asked; counts its tasks."""

    def __init__(self) -> None:
        self.count = 0

    def do_work(self, task: str) -> Any:
        self.count += 1
        if task == "exit":
            sys.exit(3)
        if task == "interrupt":
            raise KeyboardInterrupt("from do_work")
        if task == "generator-exit":
            raise GeneratorExit("from do_work")
        if task == "cancelled":
            raise asyncio.CancelledError("from do_work")
        return self.count, os.getpid()


def log_then_return(task: tuple[int, str]) -> str:
    """Log ``message`` at ``level`` on the "mylib" logger (with the traceback of an error
    for ERROR), then return the message."""
    import logging

    level, message = task
    log = logging.getLogger("mylib")
    if level == logging.ERROR:
        try:
            raise ValueError("inside")
        except ValueError:
            log.exception("failed: %s", message)
    else:
        log.log(level, "said %s", message)
    return message


def logging_factory() -> Any:
    """A factory that logs while the processor is built, in the worker."""
    import logging

    logging.getLogger("mylib.setup").info("loading the model")
    return log_then_return


class TermRecorder:
    """Ignores SIGTERM; on receiving it, appends to ``log`` whether every process in
    ``siblings`` (a file of pids, written by the test) was still running then."""

    def __init__(self, log: str, siblings: str) -> None:
        self.log = log
        self.siblings = siblings

    def do_work(self, task: Any) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        return os.getpid()

    def _on_term(self, signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the first one only
        with open(self.siblings) as f:
            pids = [int(p) for p in f.read().split()]
        alive = all(_running(pid) for pid in pids if pid != os.getpid())
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()} {'all-alive' if alive else 'some-gone'}\n")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def signalling_blocked_factory(paths: tuple[str, str, str]) -> Any:
    """A factory that writes its pid to ``pid_file``, signals ``started``, then waits
    for ``release`` before building."""
    started, release, pid_file = paths
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    signal_beacon(started)
    wait_beacon(release)
    return double


def start_lingering_thread(task: Any) -> Any:
    """Start a non-daemon thread that never ends (it would keep the process from exiting)."""
    threading.Thread(target=threading.Event().wait, daemon=False).start()
    return task


class StrayWriter(TaskProcessor):
    """Writes a stray frame header to its own result pipe when asked, as a processor
    (or a library it uses) writing to the wrong file descriptor would."""

    def do_work(self, task: tuple[str, int, int]) -> Any:
        what, kind, length = task
        if what == "stray":
            import gc

            from procoord._wire import HEADER
            from procoord._worker.pipe import PipeWorker

            (worker,) = [o for o in gc.get_objects() if isinstance(o, PipeWorker)]
            with worker.write_lock:  # a whole header, not interleaved with a load sample
                os.write(worker.wfd, HEADER.pack(length, kind, 0, 0.0))
        return what, os.getpid()


class Grower(TaskProcessor):
    """Holds on to memory on "grow", then spins a while (its load samples show it)."""

    def __init__(self) -> None:
        self.held: list[bytes] = []

    def do_work(self, task: Any) -> Any:
        if task == "grow":
            self.held.append(b"x" * (64 << 20))
            spin(0.3)
        return task

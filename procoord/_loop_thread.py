"""The loop thread behind a BlockingCoordinator: an event loop of its own (uvloop) in a
daemon thread, the Coordinator built and closed on it, and calls run on it from other
threads. It holds no reference to the facade, so the facade can be collected (and its
finalizer run) while the thread lives.

Signals are the main thread's: the loop thread (and the threads it starts) block them,
so that Ctrl-C interrupts the caller's wait instead of landing, unseen, on a thread of
procoord's; and the caller's waits wake now and then (:func:`wait_for_result`), so a
signal that another thread of the program took is raised in the caller all the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .coordinator import Coordinator

__all__ = (
    "CANCEL_WAIT_S",
    "EXIT_GRACE_S",
    "LoopThread",
    "block_signals",
    "finalize",
    "join_thread",
    "wait_for_result",
)

T = TypeVar("T")

# How long an unclosed facade's loop thread gets to close its coordinator when it is
# collected or at interpreter exit: long enough for workers to finish a short running task
# and exit cleanly, short enough that a forgotten facade never holds up the exit; past
# it, the coordinator's own finalizer kills the worker processes.
EXIT_GRACE_S = 3.0

# How long future.cancel() waits for the coordinator's loop to cancel the task; the loop
# answers in microseconds unless it is blocked.
CANCEL_WAIT_S = 5.0

# A waiting caller wakes this often to run the handlers of signals another thread took
# (CPython runs them in the main thread, whose wait only a signal of its own interrupts).
SIGNAL_CHECK_S = 0.1

# Signals that a thread raises against itself (faults): never blocked, or the kernel
# kills the process at the first one.
_FAULTS = frozenset(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS")
    if hasattr(signal, name)
)


def block_signals() -> None:
    """Leave asynchronous signals to the other threads (call first thing in a thread
    procoord starts; the threads it starts in turn inherit the mask)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _FAULTS)


def wait_for_result(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)``, waking every SIGNAL_CHECK_S so that a Ctrl-C another
    thread took is raised here (as KeyboardInterrupt) instead of once the future is done."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait_s = SIGNAL_CHECK_S if deadline is None else min(SIGNAL_CHECK_S, max(0.0, deadline - time.monotonic()))
        try:
            return future.result(wait_s)
        except concurrent.futures.TimeoutError:
            if future.done() or (deadline is not None and time.monotonic() >= deadline):
                raise


def join_thread(thread: threading.Thread) -> None:
    """``thread.join()``, waking as :func:`wait_for_result` does."""
    while thread.is_alive():
        thread.join(SIGNAL_CHECK_S)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; be lenient anyway
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """The loop thread and what it needs to stop; holds no reference to the facade, so
    the facade can be collected (and its finalizer run) while the thread lives."""

    def __init__(self, build: Callable[[], Coordinator[Any, Any]]) -> None:
        self.loop = _new_loop()
        self.stop_requested: asyncio.Future[bool] | None = None
        self.coordinator: Coordinator[Any, Any] | None = None
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._main, args=(build, started), name="procoord-loop", daemon=True)
        self.thread.start()
        try:
            started.result()  # a constructor error (a bad argument) is raised here
        except BaseException:
            self.thread.join()
            raise

    def _main(self, build: Callable[[], Coordinator], started: concurrent.futures.Future[None]) -> None:
        block_signals()
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(build, started))
        finally:
            try:
                _cancel_leftovers(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self, build: Callable[[], Coordinator], started: concurrent.futures.Future[None]) -> None:
        try:
            coord = build()
        except BaseException as exc:
            started.set_exception(exc)
            return
        self.coordinator = coord
        self.stop_requested = asyncio.get_running_loop().create_future()
        started.set_result(None)
        cancel_pending = await self.stop_requested
        # Closed by its owner already (close() is idempotent), or forgotten: then drop
        # queued work and let the running tasks finish.
        await coord.close(cancel_pending=cancel_pending)

    def request_stop(self, cancel_pending: bool) -> None:
        """Ask the loop to close the coordinator and end (from any thread)."""

        def stop() -> None:
            if self.stop_requested is not None and not self.stop_requested.done():
                self.stop_requested.set_result(cancel_pending)

        try:
            self.loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop is closed already
            pass

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def call_and_wait(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the loop's thread and return once it has run (from any thread),
        so that a cancellation has taken effect when the caller goes on."""
        if self.on_loop_thread():
            fn()
            return
        if not self.loop.is_running():  # stopped or closed: nothing would run it
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                fn()
            finally:
                done.set_result(None)

        try:
            self.loop.call_soon_threadsafe(run)
            done.result(CANCEL_WAIT_S)
        except (RuntimeError, concurrent.futures.TimeoutError):  # the loop is closed or stuck
            pass


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def finalize(runner: LoopThread) -> None:
    """The facade was collected, or the interpreter is exiting, without ``close()``."""
    runner.request_stop(cancel_pending=True)
    if not runner.on_loop_thread():
        runner.thread.join(EXIT_GRACE_S)

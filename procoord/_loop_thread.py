"""The loop thread behind a BlockingCoordinator: an event loop of its own (uvloop) in a
daemon thread, the Coordinator built and closed on it, and calls run on it from other
threads. It holds no reference to the facade, so the facade can be collected (and its
finalizer run) while the thread lives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from .coordinator import Coordinator

__all__ = ("CANCEL_WAIT_S", "EXIT_GRACE_S", "LoopThread", "finalize")

# How long an unclosed facade's loop thread gets to close its coordinator when it is
# collected or at interpreter exit: long enough for workers to finish a short running task
# and exit cleanly, short enough that a forgotten facade never holds up the exit; past
# it, the coordinator's own finalizer kills the worker processes.
EXIT_GRACE_S = 3.0

# How long future.cancel() waits for the coordinator's loop to cancel the task; the loop
# answers in microseconds unless it is blocked.
CANCEL_WAIT_S = 5.0


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

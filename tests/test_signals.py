"""Signals belong to the program's main thread: Ctrl-C interrupts a blocking call
whichever thread of the program took it, procoord's own threads block signals, and
the processes procoord starts from those threads block none."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time

from procoord import BlockingCoordinator

from . import _funcs
from ._run import ROOT, alive, checkout_environment, end_script, start_held_script
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

# The caller's script: a task that never ends, and a thread of the program's own that
# takes a SIGINT (as the kernel may pick any thread that does not block it) for each
# line on stdin.
OTHER_THREAD_SCRIPT = """
import logging, signal, sys, threading
from procoord import BlockingCoordinator
from tests import _funcs

def take_sigints():
    for _ in sys.stdin:
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

logging.basicConfig(level=logging.WARNING, format="%(message)s")
threading.Thread(target=take_sigints, daemon=True).start()
with BlockingCoordinator() as bc:
    bc.add_worker("w", _funcs.hold)
    print(bc.stats()["w"].pid, flush=True)
    bc.call((sys.argv[1], sys.argv[2]))  # never released: it runs until killed
"""

# A BlockingCoordinator whose launcher is started by its loop's threads (the seed is
# killed first, so a new launcher is needed): the masks of every thread but the main
# one, and of the worker, the processes above it and a process it starts.
MASKS_SCRIPT = """
import json, os, signal, threading, psutil
from procoord import BlockingCoordinator
from tests import _funcs

def blocked(pid, tid=None):
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    line = next(l for l in open(path) if l.startswith("SigBlk:"))
    return int(line.split()[1], 16)

with BlockingCoordinator() as first:
    first.add_worker("a", _funcs.Spawner())
    seed = psutil.Process(psutil.Process(first.stats()["a"].pid).ppid()).ppid()
    psutil.Process(seed).kill()
    psutil.Process(seed).wait(10)
    with BlockingCoordinator() as bc:
        bc.add_worker("b", _funcs.Spawner())
        child, _ = bc.call(("spawn", False))
        worker = psutil.Process(bc.stats()["b"].pid)
        launcher = worker.parent()
        threads = {t.name: blocked(os.getpid(), t.native_id) for t in threading.enumerate()
                   if t is not threading.main_thread()}
        processes = {"worker": blocked(worker.pid), "launcher": blocked(launcher.pid),
                     "launcher's parent": blocked(launcher.ppid()), "child": blocked(child)}
        print(json.dumps({"main": blocked(os.getpid(), threading.get_native_id()),
                          "threads": threads, "processes": processes}), flush=True)
"""


# Ctrl-C while a caller waits on an Executor's future, in a with block.
EXECUTOR_SCRIPT = """
import logging, sys
import procoord
from tests import _funcs

logging.basicConfig(level=logging.WARNING, format="%(message)s")
with procoord.Executor(max_workers=1) as ex:
    running = ex.submit(_funcs.hold, (sys.argv[1], sys.argv[2]))
    queued = ex.submit(_funcs.double, 21)
    print(ex.stats()["executor-0"].pid, flush=True)
    running.result()
"""

# Ctrl-C while close() waits for a task that never ends: the close gives up at once and
# the task's future fails instead of staying pending.
CLOSE_SCRIPT = """
import sys
from procoord import BlockingCoordinator
from tests import _funcs

bc = BlockingCoordinator()
bc.add_worker("w", _funcs.hold)
print(bc.stats()["w"].pid, flush=True)
running = bc.run_nowait((sys.argv[1], sys.argv[2]))
try:
    bc.close()
except KeyboardInterrupt:
    print(type(running.exception(timeout=10)).__name__, flush=True)
"""


def _read_until(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """What the process wrote to stderr up to the first line containing ``text``;
    raises TimeoutError after ``timeout`` seconds without it."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while text.encode() not in got:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError(f"no {text!r} on stderr within {timeout} s; it wrote: {got.decode()!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"stderr ended before {text!r}: {got.decode()!r}")
            got += chunk
    return got.decode()


def test_ctrl_c_taken_by_another_thread_interrupts_a_blocking_call(beacons: BeaconFactory) -> None:
    """Test that a Ctrl-C which a thread of the program other than the main one took
    still interrupts a BlockingCoordinator call at once (the grace), and a second one
    ends the program at once, workers included."""
    proc, worker_pid = start_held_script(OTHER_THREAD_SCRIPT, beacons, stdin=True)
    try:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        before = _read_until(proc, "Ctrl-C again", DEADLOCK_TIMEOUT)
        _, rest = proc.communicate("\n", timeout=DEADLOCK_TIMEOUT)
        stderr = before + rest
        assert "KeyboardInterrupt" in stderr and "did not stop in time" not in stderr, stderr
        assert not alive(worker_pid)
    finally:
        end_script(proc)


def test_executor_left_by_ctrl_c_twice_ends_at_once(beacons: BeaconFactory) -> None:
    """Test that a Ctrl-C in an Executor's with block gives the running call the grace
    (instead of waiting for it forever, as its worker does not get the Ctrl-C), and a
    second one ends the program at once, the worker with it."""
    proc, worker_pid = start_held_script(EXECUTOR_SCRIPT, beacons)
    try:
        proc.send_signal(signal.SIGINT)
        before = _read_until(proc, "Ctrl-C again", DEADLOCK_TIMEOUT)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=DEADLOCK_TIMEOUT)
        stderr = before + rest
        assert "KeyboardInterrupt" in stderr and "did not stop in time" not in stderr, stderr
        assert not alive(worker_pid)
    finally:
        end_script(proc)


def test_ctrl_c_during_close_fails_the_running_task(beacons: BeaconFactory) -> None:
    """Test that Ctrl-C while close() waits for a task that never ends kills its worker
    at once, and the task's future fails with WorkerLostError instead of staying pending."""
    proc, worker_pid = start_held_script(CLOSE_SCRIPT, beacons)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLOCK_TIMEOUT)
        assert out.strip() == "WorkerLostError", err
        assert not alive(worker_pid)
    finally:
        end_script(proc)


def test_procoord_threads_leave_signals_to_the_program() -> None:
    """Test that a BlockingCoordinator's threads block SIGINT (so the kernel hands it to
    the caller's thread), while the launcher they start, its worker and what the worker
    starts block no signal (nor does the main thread)."""
    out = subprocess.run(
        [sys.executable, "-c", MASKS_SCRIPT],
        cwd=ROOT,
        env=checkout_environment(),
        capture_output=True,
        text=True,
        timeout=DEADLOCK_TIMEOUT,
    )
    assert out.returncode == 0, out.stderr
    masks = json.loads(out.stdout)
    sigint = 1 << (signal.SIGINT - 1)
    assert masks["threads"], "no thread of procoord's was found"
    assert all(mask & sigint for mask in masks["threads"].values()), masks
    assert masks["main"] == 0, masks
    assert masks["processes"] == dict.fromkeys(masks["processes"], 0), masks


def test_blocking_call_with_timeout_still_times_out() -> None:
    """Test that a blocking call's own timeout is kept while the caller's wait wakes
    now and then (for signals): TimeoutError at about the timeout, not before."""
    with BlockingCoordinator() as bc:
        bc.add_worker("w", _funcs.sleeper)
        t0 = time.monotonic()
        try:
            bc.run_coroutine(bc.coordinator.call(1.0), timeout=0.35)
        except TimeoutError:
            elapsed = time.monotonic() - t0
        else:
            raise AssertionError("no TimeoutError")
        assert 0.3 <= elapsed < DEADLOCK_TIMEOUT
        assert bc.call(0.0)[0] == 0.0

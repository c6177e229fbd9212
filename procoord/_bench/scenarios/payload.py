"""(d) Large arguments: 1 MiB and 16 MiB ``bytes`` arguments echoed back, and a 64 MiB
numpy buffer (out-of-band pickle buffers) when numpy imports; next to the same bytes
echoed over a socketpair by a plain Python process."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
from typing import Any

from procoord import TaskPrefs

from .._config import BenchConfig
from .._coord import coordinator
from .._harness import MIB, Profiler, median_of, summary
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, pool_warm, ppe, ppe_warm
from .._tasks import echo

__all__ = ("SCENARIO",)

MB = 1e6


# Each pool first echoes the payload a few times on every worker: what is measured is
# the steady state, not each process's first touches of fresh memory (until malloc
# settles its thresholds for buffers this big, and while a worker's buffers alternate
# between two places, one task's still held as the next one's arrive).
WARM_ROUNDS = 4


async def _procoord(cfg: BenchConfig, payload: Any, calls: int) -> float:
    async with await coordinator(echo, cfg.workers, warm=0) as coord:
        for _ in range(WARM_ROUNDS):
            for i in range(cfg.workers):
                await coord.call(payload, TaskPrefs.Required(f"w{i}"))
        t0 = time.perf_counter()
        for _ in range(calls):
            await coord.call(payload)
        return time.perf_counter() - t0


def _ppe(cfg: BenchConfig, payload: Any, calls: int) -> float:
    with ppe(cfg.workers) as ex:
        ppe_warm(ex, cfg.workers)
        for _ in range(WARM_ROUNDS):
            for f in [ex.submit(echo, payload) for _ in range(cfg.workers)]:
                f.result()
        t0 = time.perf_counter()
        for _ in range(calls):
            ex.submit(echo, payload).result()
        return time.perf_counter() - t0


def _pool(cfg: BenchConfig, payload: Any, calls: int) -> float:
    with mp_pool(cfg.workers) as pool:
        pool_warm(pool, cfg.workers)
        for _ in range(WARM_ROUNDS):
            pool.map(echo, [payload] * cfg.workers, chunksize=1)
        t0 = time.perf_counter()
        for _ in range(calls):
            pool.apply(echo, (payload,))
        return time.perf_counter() - t0


def _numpy_buffer(size: int) -> Any | None:
    try:
        numpy = importlib.import_module("numpy")
    except ImportError:
        return None
    return numpy.ones(size, dtype=numpy.uint8)


# The same bytes echoed by a plain Python process over a socketpair: what the channel
# between two processes moves, with no pickling and no event loop.
RAW_ECHO_SOURCE = """import socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
view = memoryview(bytearray(int(sys.argv[2])))
while True:
    got = 0
    while got < len(view):
        k = s.recv_into(view[got:])
        if not k:
            sys.exit(0)
        got += k
    s.sendall(view)
"""


def _raw(size: int, calls: int) -> float:
    mine, theirs = socket.socketpair()
    argv = [sys.executable, "-c", RAW_ECHO_SOURCE, str(theirs.fileno()), str(size)]
    proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()])
    theirs.close()
    data, back = os.urandom(size), memoryview(bytearray(size))

    def once() -> None:
        mine.sendall(data)
        got = 0
        while got < size:
            got += mine.recv_into(back[got:])

    try:
        once()
        t0 = time.perf_counter()
        for _ in range(calls):
            once()
        return time.perf_counter() - t0
    finally:
        mine.close()
        proc.wait(10)


def _echo_rates(cfg: BenchConfig, prof: Profiler, payload: Any, size: int, calls: int, reps: int) -> dict[str, Any]:
    pc, ppes, pools, raws = [], [], [], []
    for _ in range(reps):
        pc.append(size * calls / prof.run(cfg, _procoord(cfg, payload, calls)) / MB)
        ppes.append(size * calls / _ppe(cfg, payload, calls) / MB)
        pools.append(size * calls / _pool(cfg, payload, calls) / MB)
        raws.append(size * calls / _raw(size, calls) / MB)
    return {"procoord": summary(pc), "ppe": summary(ppes), "pool": summary(pools), "raw": summary(raws)}


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """MB/s of sequential echo round trips, each pool in turn."""
    out: dict[str, Any] = {
        "how": "sequential echo round trips, after four on each worker; MB/s = argument bytes (1e6 per MB) "
        "per second of round trip",
        "raw": "the same bytes echoed over a socketpair by a plain Python process (blocking, no pickling)",
        "1mib": _echo_rates(cfg, prof, os.urandom(MIB), MIB, cfg.echo_calls, cfg.reps_up_to(5)),
        "16mib": _echo_rates(cfg, prof, os.urandom(16 * MIB), 16 * MIB, cfg.big_echo_calls, cfg.reps_up_to(3)),
    }
    big = _numpy_buffer(64 * MIB)
    if big is None:
        out["64mib"] = {"skipped": "numpy is not installed"}
    else:
        out["64mib"] = _echo_rates(cfg, prof, big, 64 * MIB, cfg.big_echo_calls, cfg.reps_up_to(3))
    return out


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """One row per payload."""
    out = []
    names = (("1mib", "1 MiB bytes echo"), ("16mib", "16 MiB bytes echo"), ("64mib", "64 MiB numpy echo"))
    for key, label in names:
        name = f"{label} (MB/s)"
        node = fig[key]
        if "skipped" in node:
            out.append(Row("d", f"{name}: {node['skipped']}", None))
            continue
        out.append(
            Row(
                "d", name, median_of(node["procoord"]), spread(node["procoord"]),
                ppe=median_of(node["ppe"]), pool=median_of(node["pool"]),
                other=("socketpair echo", median_of(node["raw"])),
            )
        )  # fmt: skip
    return out


SCENARIO = Scenario("d", "payload", "large arguments echoed back", measure, rows)

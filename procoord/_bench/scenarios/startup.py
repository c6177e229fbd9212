"""(e) Start-up and memory: a fresh program that starts 2 workers and gets a result
from each, ``import procoord``, a pool started in a running process, ``add_worker`` on
a running coordinator, a restart after a SIGKILL, and USS per idle worker.

Only the public API is used, so these figures follow whatever starts the workers."""

from __future__ import annotations

import asyncio
import compileall
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import procoord
from procoord import Coordinator, TaskPrefs, WorkerLostError

from .._config import BenchConfig
from .._coord import worker_pids
from .._harness import Profiler, median_of, percentile, summary, timed_program
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, ppe
from .._tasks import noop

__all__ = ("SCENARIO",)

IDLE_S = 0.5  # how long workers idle before their memory is read

# A measured program: it prints the milliseconds from its first line to a result from
# each of its 2 workers; with MEMORY it then lets them idle and prints their mean RSS
# and USS in MiB. The benchmark times it from its start to its exit. Processors are
# builtins, so every pool finds them in its workers whatever its start method.
_HEADER = """import time
t0 = time.perf_counter()
MEMORY = {memory}
def done():
    print((time.perf_counter() - t0) * 1000)
def report(pids):
    import psutil
    infos = [psutil.Process(pid).memory_full_info() for pid in pids]
    print(sum(i.rss for i in infos) / len(infos) / 2**20, sum(i.uss for i in infos) / len(infos) / 2**20)
"""
_BODIES = {
    "procoord": f"""import asyncio
import procoord
async def main():
    async with procoord.Coordinator() as coord:
        await asyncio.gather(coord.add_worker(1, abs), coord.add_worker(2, abs))
        got = await asyncio.gather(*(coord.call(-i, procoord.TaskPrefs.Required(i)) for i in (1, 2)))
        assert [r for r, _ in got] == [1, 2], got
        done()
        if MEMORY:
            await asyncio.sleep({IDLE_S})
            report([s.pid for s in (await coord.stats()).values()])
asyncio.run(main())
""",
    "ppe": f"""import multiprocessing
from concurrent.futures import ProcessPoolExecutor
with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
    assert [f.result() for f in [ex.submit(abs, -1), ex.submit(abs, -2)]] == [1, 2]
    done()
    if MEMORY:
        time.sleep({IDLE_S})
        report(list(ex._processes))
""",
    "pool": f"""import multiprocessing
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert pool.map(abs, [-1, -2], chunksize=1) == [1, 2]
    done()
    if MEMORY:
        time.sleep({IDLE_S})
        report([p.pid for p in pool._pool])
""",
}


def program(kind: str, memory: bool = False) -> str:
    """The source of a measured program: ``bare`` (``pass``), ``import`` (``import
    procoord``), or a pool's (``procoord``, ``ppe``, ``pool``)."""
    if kind == "bare":
        return "pass\n"
    if kind == "import":
        return "import procoord\n"
    return _HEADER.format(memory=memory) + _BODIES[kind]


def _run_programs(kinds: tuple[str, ...], runs: int, memory: bool = False) -> dict[str, dict[str, list[float]]]:
    keys = ("exit_ms", "results_ms", "rss_mib", "uss_mib")
    out: dict[str, dict[str, list[float]]] = {k: {key: [] for key in keys} for k in kinds}
    for _ in range(runs):
        for kind in kinds:  # interleaved, so a noisy moment hits every program alike
            elapsed, stdout = timed_program(program(kind, memory))
            out[kind]["exit_ms"].append(elapsed * 1000)
            lines = stdout.split("\n")
            if lines[0].strip():
                out[kind]["results_ms"].append(float(lines[0]))
            if memory:
                rss, uss = lines[1].split()
                out[kind]["rss_mib"].append(float(rss))
                out[kind]["uss_mib"].append(float(uss))
    return out


async def _procoord_running(cfg: BenchConfig) -> dict[str, Any]:
    """In a running process: a new coordinator's start, add_worker next to a running
    worker, and restarts after SIGKILL."""
    async with Coordinator() as first:  # whatever the backend starts once per process
        await first.add_worker("w", noop)
    t0 = time.perf_counter()
    async with Coordinator() as coord:
        await asyncio.gather(*(coord.add_worker(f"w{i}", abs) for i in range(cfg.workers)))
        await asyncio.gather(*(coord.call(i, TaskPrefs.Required(f"w{i}")) for i in range(cfg.workers)))
        warm_ms = (time.perf_counter() - t0) * 1000
        adds: dict[str, list[float]] = {"builtin": [], "module": []}
        for i in range(cfg.add_worker_runs):
            for kind, processor in (("builtin", abs), ("module", noop)):
                t0 = time.perf_counter()
                await coord.add_worker(f"x{i}", processor)
                adds[kind].append((time.perf_counter() - t0) * 1000)
                await coord.remove_worker(f"x{i}")
        # The crashes are on purpose: keep their warnings out of the report.
        log = logging.getLogger("procoord")
        level, log.level = log.level, logging.ERROR
        try:
            restarts = [await _restart_ms(coord, f"r{i}") for i in range(cfg.restart_runs)]
        finally:
            log.setLevel(level)
    return {
        "warm_ms": warm_ms,
        "add_worker_ms": adds["builtin"],
        "add_module_ms": adds["module"],
        "restart_ms": restarts,
    }


async def _restart_ms(coord: Coordinator, ident: str) -> float:
    """Milliseconds from the SIGKILL of a fresh worker to its next result."""
    await coord.add_worker(ident, abs)
    await coord.call(0, TaskPrefs.Required(ident))
    pid = (await worker_pids(coord))[ident]
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    for _ in range(3):
        try:
            await coord.call(-1, TaskPrefs.Required(ident))
            break
        except WorkerLostError:
            continue  # sent before the death was seen; the next one waits for the restart
    else:
        raise RuntimeError(f"worker {ident!r} gave no result after its restart")
    elapsed = (time.perf_counter() - t0) * 1000
    await coord.remove_worker(ident)
    return elapsed


def _stdlib_running(cfg: BenchConfig, which: str) -> float:
    """Milliseconds of a second pool of the kind in this process, to a result from
    each worker."""
    for _ in range(2):
        t0 = time.perf_counter()
        if which == "ppe":
            with ppe(cfg.workers) as ex:
                for f in [ex.submit(abs, -i) for i in range(cfg.workers)]:
                    f.result()
                warm_ms = (time.perf_counter() - t0) * 1000
        else:
            with mp_pool(cfg.workers) as pool:
                pool.map(abs, range(cfg.workers), chunksize=1)
                warm_ms = (time.perf_counter() - t0) * 1000
    return warm_ms


def _compile_procoord() -> None:
    """Byte-compile procoord as an install does (pip writes the .pyc files), so that its
    modules are not compiled anew by each measured program where the environment says
    PYTHONDONTWRITEBYTECODE: the standard library the other pools use comes compiled."""
    compileall.compile_dir(str(Path(procoord.__file__).parent), quiet=1)


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Fresh programs first (medians of several runs), then the in-process figures."""
    _compile_procoord()
    pools = ("procoord", "ppe", "pool")
    programs = _run_programs(("bare", *pools), cfg.program_runs)
    imports = _run_programs(("bare", "import"), cfg.import_runs)
    memory = _run_programs(pools, cfg.reps_up_to(3), memory=True)
    running: list[dict[str, Any]] = []
    warm: dict[str, list[float]] = {"ppe": [], "pool": []}
    for _ in range(cfg.reps_up_to(3)):
        running.append(prof.run(cfg, _procoord_running(cfg)))
        for which, values in warm.items():
            values.append(_stdlib_running(cfg, which))
    adds = [sorted(r["add_worker_ms"]) for r in running]
    module_adds = [sorted(r["add_module_ms"]) for r in running]
    restarts = [sorted(r["restart_ms"]) for r in running]
    return {
        "how": {
            "program": "python -c PROGRAM: import, start 2 workers, a result from each; ms to exit, and "
            "ms from the program's first line to the results; procoord byte-compiled first, as installed",
            "import": "python -c 'import procoord', ms to exit, next to python -c pass",
            "memory": f"the same programs; RSS / USS (psutil memory_full_info) of the idle workers {IDLE_S} s later",
            "warm": "a second pool in a running process, to a result from each of 2 workers",
            "add_worker": "add_worker next to a running worker, then remove_worker (not timed); the processor "
            "a builtin (the launcher's own cost), or a function from a module (the worker also imports it)",
            "restart": "SIGKILL of a fresh worker (a builtin processor) to its next result (Required), restart on",
        },
        "program": {k: {key: summary(v) for key, v in d.items() if v} for k, d in programs.items()},
        "memory": {k: {key: summary(d[key]) for key in ("rss_mib", "uss_mib")} for k, d in memory.items()},
        "import_ms": summary(imports["import"]["exit_ms"]),
        "bare_ms": summary(programs["bare"]["exit_ms"] + imports["bare"]["exit_ms"]),
        "warm_ms": {"procoord": summary(r["warm_ms"] for r in running)} | {k: summary(v) for k, v in warm.items()},
        "add_worker_p50_ms": summary(percentile(a, 0.5) for a in adds),
        "add_worker_max_ms": summary(a[-1] for a in adds),
        "add_worker_module_p50_ms": summary(percentile(a, 0.5) for a in module_adds),
        "restart_p50_ms": summary(percentile(r, 0.5) for r in restarts),
    }


def _row(label: str, pc: Any, ppe_: Any = None, pool: Any = None, other: tuple[str, Any] | None = None) -> Row:
    return Row(
        "e", label, median_of(pc), spread(pc), ppe=median_of(ppe_), pool=median_of(pool),
        other=None if other is None else (other[0], median_of(other[1])),
    )  # fmt: skip


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """Program, import, warm start, add_worker, restart, memory."""
    prog, mem, warm = fig["program"], fig["memory"], fig["warm_ms"]
    bare = ("python -c pass", fig["bare_ms"])

    def each(node: dict[str, Any], key: str) -> list[Any]:
        return [node[side][key] for side in ("procoord", "ppe", "pool")]

    w = cfg.workers
    exit_ms, results_ms = each(prog, "exit_ms"), each(prog, "results_ms")
    uss, rss = each(mem, "uss_mib"), each(mem, "rss_mib")
    return [
        _row(f"fresh program, {w} workers, to exit (ms)", exit_ms[0], exit_ms[1], exit_ms[2], bare),
        _row(f"fresh program, {w} workers, to results (ms)", results_ms[0], results_ms[1], results_ms[2]),
        _row("python -c 'import procoord' (ms)", fig["import_ms"], other=bare),
        _row(f"new pool in a running process, {w} workers (ms)", warm["procoord"], warm["ppe"], warm["pool"]),
        _row("add_worker on a running coordinator, p50 (ms)", fig["add_worker_p50_ms"]),
        _row("add_worker, processor from a module, p50 (ms)", fig["add_worker_module_p50_ms"]),
        _row("restart after SIGKILL, to next result, p50 (ms)", fig["restart_p50_ms"]),
        _row("USS per idle worker (MiB)", uss[0], uss[1], uss[2]),
        _row("RSS per idle worker (MiB)", rss[0], rss[1], rss[2]),
    ]


SCENARIO = Scenario("e", "startup", "start-up, restarts and memory per worker", measure, rows)

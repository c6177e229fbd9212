"""Worker life under procoord's own launcher: no ``__main__`` guard, each worker the root
of its own process tree, the launcher dying or stopping, environments, resource limits,
names in ps, and what a worker loads."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from procoord import Coordinator, TaskPrefs, TaskTimeoutError, WorkerLostError, WorkerStartError
from procoord.backends import LocalBackend

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT, WORKER_TITLE

LAUNCHER_MODULE = "procoord._worker.launcher"

# Modules of the parent's machinery that a worker process must not load.
PARENT_ONLY = (
    "procoord.coordinator",
    "procoord.blocking",
    "procoord.interface",
    "procoord._bulk",
    "procoord._slot",
    "procoord._dispatch",
    "procoord._task",
    "procoord._ledger",
    "procoord.executor",
    "procoord.metrics",
    "procoord.handle",
    "procoord.balancer",
    "procoord.backends",
)


async def _gone(pids: list[int]) -> bool:
    """Wait (up to the deadlock timeout, off the loop) until none of ``pids`` runs."""
    return await asyncio.to_thread(_wait_gone, pids)


def _wait_gone(pids: list[int]) -> bool:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=DEADLOCK_TIMEOUT)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _script_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


NO_GUARD_SCRIPT = """
import asyncio, os, procoord
print("top level ran", flush=True)

class Tripler(procoord.TaskProcessor):
    def do_work(self, x):
        return x * 3

async def main():
    async with procoord.Coordinator() as c:
        await c.add_worker("t", Tripler())
        await c.add_worker("l", lambda x: x + 1)
        t, _ = await c.call(2, procoord.TaskPrefs.Required("t"))
        l, _ = await c.call(2, procoord.TaskPrefs.Required("l"))
        print(t, l, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
async def test_script_without_main_guard(tmp_path: Path, how: str) -> None:
    """Test a script with no ``if __name__ == "__main__"`` guard, run as a file and read
    from stdin: processors from ``__main__`` work and the script's top level runs once
    (the main module is never imported again in a worker)."""
    path = tmp_path / "script.py"
    path.write_text(NO_GUARD_SCRIPT)
    if how == "file":
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(path), stdout=asyncio.subprocess.PIPE, env=_script_env()
        )
        out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    else:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=_script_env(),
        )
        out, _ = await asyncio.wait_for(proc.communicate(NO_GUARD_SCRIPT.encode()), DEADLOCK_TIMEOUT)
    assert proc.returncode == 0
    assert out.decode().splitlines() == ["top level ran", "6 3"]


# -- process trees --------------------------------------------------------------------


async def _end_by_close(coord: Coordinator) -> None:
    await coord.close()


async def _end_by_remove(coord: Coordinator) -> None:
    assert await coord.remove_worker("w")


async def _end_by_replace(coord: Coordinator) -> None:
    assert await coord.add_worker("w", _funcs.Spawner())


async def _end_by_crash(coord: Coordinator) -> None:
    with pytest.raises(WorkerLostError):
        await coord.call(("exit", 3), TaskPrefs.Required("w"))
    assert await coord.call(("ids", None), TaskPrefs.Required("w"))  # restarted


async def _end_by_timeout(coord: Coordinator) -> None:
    h = await coord.run(("hang", None), TaskPrefs.Required("w"), timeout=0.5)
    with pytest.raises(TaskTimeoutError):
        await h
    assert await coord.call(("ids", None), TaskPrefs.Required("w"))  # restarted


async def _end_by_kill(coord: Coordinator) -> None:
    pid = (await coord.stats())["w"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError):
        await coord.call(("hang", None), TaskPrefs.Required("w"))


ENDINGS: dict[str, Callable[[Coordinator], object]] = {
    "close": _end_by_close,
    "remove": _end_by_remove,
    "replace": _end_by_replace,
    "crash": _end_by_crash,
    "timeout": _end_by_timeout,
    "sigkill": _end_by_kill,
}


@pytest.mark.parametrize("new_session", [False, True], ids=["same-group", "setsid"])
@pytest.mark.parametrize("ending", sorted(ENDINGS))
async def test_processes_a_worker_started_end_with_it(ending: str, new_session: bool) -> None:
    """Test that a `sleep 600` started by a processor (in the worker's process group, or
    in a session of its own) ends when the worker ends, whichever way it ends."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _funcs.Spawner())
        child, _ = await coord.call(("spawn", new_session), TaskPrefs.Required("w"))
        assert _running(child)
        await ENDINGS[ending](coord)  # type: ignore[misc]
        assert await _gone([child])


async def test_worker_leads_its_own_session(coord: Coordinator) -> None:
    """Test that a worker is the leader of its own session and process group (not the
    caller's), so a signal to its group reaches nothing of the caller."""
    await coord.add_worker("w", _funcs.Spawner())
    (pid, pgid, sid, _), _ = await coord.call(("ids", None), TaskPrefs.Required("w"))
    assert pid == pgid == sid
    assert pgid != os.getpgid(0)


async def test_children_of_a_worker_do_not_ignore_sigint(coord: Coordinator) -> None:
    """Test that what a worker starts has SIGINT neither ignored nor blocked."""
    await coord.add_worker("w", _funcs.Spawner())
    child, _ = await coord.call(("spawn", False), TaskPrefs.Required("w"))
    status = Path(f"/proc/{child}/status").read_text()
    masks = dict(line.split(":\t") for line in status.splitlines() if line.startswith(("SigIgn", "SigBlk")))
    sigint_bit = 1 << (signal.SIGINT - 1)
    assert not int(masks["SigIgn"], 16) & sigint_bit
    assert not int(masks["SigBlk"], 16) & sigint_bit


TREE_SCRIPT = """
import asyncio, os, psutil, procoord
from tests import _funcs

async def main():
    coord = procoord.Coordinator()
    await coord.add_worker("a", _funcs.Spawner())
    await coord.add_worker("b", _funcs.Spawner())
    pids = [s.pid for s in (await coord.stats()).values()]
    launcher = psutil.Process(pids[0]).ppid()
    kids = [(await coord.call(("spawn", i == 1), procoord.TaskPrefs.Required(w)))[0] for i, w in enumerate("ab")]
    print(launcher, *pids, *kids, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _start_tree_script(tmp_path: Path) -> tuple[asyncio.subprocess.Process, list[int]]:
    path = tmp_path / "tree.py"
    path.write_text(TREE_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        env=_script_env(),
        cwd=str(Path(__file__).resolve().parent.parent),
        start_new_session=True,  # its own group, as a shell's foreground job
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLOCK_TIMEOUT)
    pids = [int(p) for p in line.split()]
    assert len(pids) == 5, line
    launcher = psutil.Process(pids[0])
    assert LAUNCHER_MODULE in launcher.cmdline()
    spares = [child.pid for child in launcher.children() if child.pid not in pids]
    assert len(spares) == 1, spares  # the fork waiting to be the next worker
    return proc, [*pids, *spares]


async def test_parent_sigkill_ends_launcher_workers_and_their_children(tmp_path: Path) -> None:
    """Test that SIGKILL of the coordinator's process ends the launcher, its spare, every
    worker and the processes the workers started (also one in a session of its own)."""
    proc, pids = await _start_tree_script(tmp_path)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert await _gone(pids)


async def test_ctrl_c_ends_launcher_workers_and_their_children(tmp_path: Path) -> None:
    """Test Ctrl-C (SIGINT to the caller's process group): the script stops, and with it
    the launcher, the workers and what they started."""
    proc, pids = await _start_tree_script(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), DEADLOCK_TIMEOUT) != 0
    assert await _gone(pids)


SIGTERM_SCRIPT = """
import asyncio, signal, procoord
from tests import _funcs

async def main():
    async with procoord.Coordinator() as coord:
        await coord.add_worker("w", _funcs.Spawner())
        got = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, got.set)
        print("ready", flush=True)
        await got.wait()
        _, worker = await coord.call(("ids", None))
        print(worker, (await coord.stats())["w"].restarts, flush=True)

asyncio.run(main())
"""


async def test_sigterm_to_the_callers_group_reaches_no_worker(tmp_path: Path) -> None:
    """Test a SIGTERM to the caller's whole process group (as systemd or some shells send
    it) handled by the caller: its workers did not get it and go on, never restarted."""
    path = tmp_path / "term.py"
    path.write_text(SIGTERM_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        stdout=asyncio.subprocess.PIPE,
        env=_script_env(),
        cwd=str(Path(__file__).resolve().parent.parent),
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), DEADLOCK_TIMEOUT) == b"ready\n"
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    assert proc.returncode == 0
    assert out.decode().split() == ["w", "0"]


EXIT_SCRIPT = """
import asyncio, sys, procoord
from tests import _funcs

log, siblings = sys.argv[1], sys.argv[2]

async def main():
    pids = []
    for n in range(2):  # two coordinators, never closed, two workers each
        coord = procoord.Coordinator()
        for i in range(2):
            await coord.add_worker(i, _funcs.TermRecorder(log, siblings))
            pids.append((await coord.call(None, procoord.TaskPrefs.Required(i)))[0])
        globals()[f"kept{n}"] = coord
    with open(siblings, "w") as f:
        f.write(" ".join(map(str, pids)))
    print(*pids, flush=True)

asyncio.run(main())
"""


async def test_workers_ignoring_sigterm_are_ended_together_at_exit(tmp_path: Path) -> None:
    """Test unclosed coordinators whose workers ignore SIGTERM, at interpreter exit:
    every worker gets SIGTERM while the others still run (all at once, not one after
    another's kill), and all are gone once the program has exited."""
    path, log, siblings = tmp_path / "exit.py", tmp_path / "log", tmp_path / "pids"
    path.write_text(EXIT_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        str(log),
        str(siblings),
        stdout=asyncio.subprocess.PIPE,
        env=_script_env(),
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    assert proc.returncode == 0
    pids = [int(p) for p in out.split()]
    assert await _gone(pids)
    lines = sorted(log.read_text().splitlines())
    assert lines == sorted(f"{pid} all-alive" for pid in pids)


FORK_SCRIPT = """
import asyncio, os, procoord

async def start():
    coord = procoord.Coordinator()
    await coord.add_worker("a", abs)
    globals()["kept"] = coord
    return (await coord.stats())["a"].pid

worker = asyncio.run(start())
child = os.fork()
if child == 0:
    raise SystemExit(0)  # the fork exits normally: its exit handlers run
os.waitpid(child, 0)
with open(f"/proc/{worker}/stat") as f:
    print(worker, f.read().rsplit(")", 1)[1].split()[0], flush=True)
"""


async def test_a_fork_of_the_callers_process_leaves_its_workers_alone(tmp_path: Path) -> None:
    """Test that a fork of the coordinator's process, exiting normally, does not stop
    the coordinator's workers (they are not its own)."""
    path = tmp_path / "fork.py"
    path.write_text(FORK_SCRIPT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), stdout=asyncio.subprocess.PIPE, env=_script_env()
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    assert proc.returncode == 0
    worker, state = out.decode().split()
    assert state not in ("Z", "X")
    assert await _gone([int(worker)])  # and the script's own exit ended it


# -- the launcher ---------------------------------------------------------------------


async def _launcher_of(coord: Coordinator, ident: str) -> psutil.Process:
    pid = (await coord.stats())[ident].pid
    assert pid is not None
    launcher = psutil.Process(psutil.Process(pid).ppid())
    assert LAUNCHER_MODULE in launcher.cmdline()
    return launcher


async def test_killed_launcher_is_replaced_and_workers_keep_running(coord: Coordinator) -> None:
    """Test that a launcher killed by a worker's processor (a signal to the worker's
    parent) affects no running worker and nothing of the caller; the next add_worker
    gets a fresh launcher, and a crash of a worker of the old one is still handled."""
    await coord.add_worker("a", _funcs.Spawner())
    await coord.add_worker("b", _funcs.Spawner())
    old = await _launcher_of(coord, "a")
    killed, _ = await coord.call(("kill_parent", None), TaskPrefs.Required("a"))
    assert killed == old.pid
    assert await _gone([old.pid])
    assert (await coord.call(("ids", None), TaskPrefs.Required("b")))[1] == "b"
    await coord.add_worker("c", _funcs.Spawner())
    assert (await _launcher_of(coord, "c")).pid != old.pid
    with pytest.raises(WorkerLostError):
        await coord.call(("exit", 5), TaskPrefs.Required("b"))
    assert (await coord.call(("ids", None), TaskPrefs.Required("b")))[1] == "b"


async def test_stopped_launcher_fails_only_the_start_in_flight() -> None:
    """Test a launcher stopped with SIGSTOP: an add_worker fails within its ready
    timeout with WorkerStartError saying so, a running worker goes on, and the next
    add_worker works with a fresh launcher."""
    async with Coordinator(backend=LocalBackend(ready_timeout=1.0)) as coord:
        await coord.add_worker("a", _funcs.Spawner())
        launcher = await _launcher_of(coord, "a")
        launcher.suspend()
        try:
            with pytest.raises(WorkerStartError, match="launcher"):
                await coord.add_worker("b", _funcs.Spawner())
            assert (await coord.call(("ids", None), TaskPrefs.Required("a")))[1] == "a"
            await coord.add_worker("c", _funcs.Spawner())
            assert (await _launcher_of(coord, "c")).pid != launcher.pid
        finally:
            if _running(launcher.pid):
                launcher.kill()
        assert await _gone([launcher.pid])


@pytest.mark.parametrize("how", ["killed", "stopped"])
async def test_seed_that_dies_or_stops_is_replaced(how: str) -> None:
    """Test the seed that forks launchers, killed or stopped: running workers go on
    and a new coordinator still starts workers (with a new seed, or a fresh launcher)."""
    async with Coordinator() as first:
        await first.add_worker("a", _funcs.Spawner())
        seed = psutil.Process((await _launcher_of(first, "a")).ppid())
        assert "--seed" in seed.cmdline()
        if how == "killed":
            seed.kill()
        else:
            seed.suspend()
        try:
            async with Coordinator(backend=LocalBackend(ready_timeout=2.0)) as second:
                await second.add_worker("b", _funcs.Spawner())
                assert (await second.call(("ids", None)))[1] == "b"
            assert (await first.call(("ids", None)))[1] == "a"
        finally:
            if _running(seed.pid):
                seed.kill()
    assert await _gone([seed.pid])


async def test_a_start_cancelled_while_its_launcher_is_forked_leaves_no_launcher() -> None:
    """Test an add_worker cancelled while the seed forks its launcher (the seed stopped
    meanwhile): the launcher forked after all is let go of and ends, nothing leaks."""
    async with Coordinator() as first:
        await first.add_worker("a", _funcs.Spawner())
        seed = psutil.Process((await _launcher_of(first, "a")).ppid())
        before = {c.pid for c in seed.children()}
        seed.suspend()
        try:
            async with Coordinator(backend=LocalBackend(ready_timeout=30.0)) as second:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(second.add_worker("b", _funcs.Spawner()), 0.5)
        finally:
            seed.resume()
        # The seed answers requests in turn: once this one is served, so was the first.
        async with Coordinator() as third:
            await third.add_worker("c", _funcs.Spawner())
            kept = before | {(await _launcher_of(third, "c")).pid}
            unclaimed = [c.pid for c in seed.children() if c.pid not in kept]
            assert await _gone(unclaimed)


async def test_out_of_file_descriptors(coord: Coordinator) -> None:
    """Test add_worker with no file descriptor left: WorkerStartError naming the limit,
    and the next add_worker works once descriptors are free again."""
    await coord.add_worker("a", _funcs.double)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, hard))
    try:
        with pytest.raises(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(WorkerStartError, match=r"file descriptors.*RLIMIT_NOFILE"):
            await coord.add_worker("b", _funcs.double)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await coord.add_worker("b", _funcs.double)
    assert await coord.call(4, TaskPrefs.Required("b")) == (8, "b")


async def _spare_of(launcher: psutil.Process) -> int:
    """The launcher's spare, once it is there (it is forked after each start)."""
    deadline = asyncio.get_running_loop().time() + DEADLOCK_TIMEOUT
    while True:
        spares = [c.pid for c in launcher.children() if _name(c) == "procoord spare"]
        if len(spares) == 1:
            return spares[0]
        assert asyncio.get_running_loop().time() < deadline, spares
        await asyncio.sleep(0.01)  # wait-ok: no event tells of a fork in another process


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


async def test_the_spare_becomes_the_next_worker_and_ends_with_its_launcher() -> None:
    """Test the launcher's spare (a fork made ahead of the next add_worker): the next
    worker is that process, a new spare waits after it, a spare killed is replaced by a
    direct fork, and closing the backend ends the spare with the launcher."""
    backend = LocalBackend()
    async with Coordinator(backend=backend) as coord:
        await coord.add_worker("a", _funcs.Spawner())
        launcher = await _launcher_of(coord, "a")

        spare = await _spare_of(launcher)
        await coord.add_worker("b", _funcs.Spawner())
        (pid_b, _, _, _), _ = await coord.call(("ids", None), TaskPrefs.Required("b"))
        assert pid_b == spare
        next_spare = await _spare_of(launcher)
        os.kill(next_spare, signal.SIGKILL)
        assert await _gone([next_spare])
        await coord.add_worker("c", _funcs.Spawner())
        (pid_c, _, _, _), _ = await coord.call(("ids", None), TaskPrefs.Required("c"))
        assert pid_c != next_spare
        last_spare = await _spare_of(launcher)
        backend.close()
        assert await _gone([launcher.pid, last_spare])


PIDS_CGROUPS = Path("/sys/fs/cgroup/pids")


async def test_out_of_processes(coord: Coordinator) -> None:
    """Test add_worker when the launcher can fork no more (its pids cgroup is full):
    WorkerStartError naming the limit, and the next add_worker works once the limit
    allows. (As root RLIMIT_NPROC does not apply, so a pids cgroup sets the limit.)"""
    await coord.add_worker("a", _funcs.double)
    launcher = await _launcher_of(coord, "a")
    await _spare_of(launcher)
    group = PIDS_CGROUPS / f"procoord-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "pids.max").write_text("1")
        (group / "cgroup.procs").write_text(str(launcher.pid))
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"no pids cgroup to limit the launcher with: {exc}")
    try:
        await coord.add_worker("b", _funcs.double)  # the spare, forked before the limit
        with pytest.raises(WorkerStartError, match=r"cannot fork another process.*limits"):
            await coord.add_worker("c", _funcs.double)
        (group / "pids.max").write_text("max")
        await coord.add_worker("c", _funcs.double)
        assert await coord.call(4, TaskPrefs.Required("c")) == (8, "c")
        await _spare_of(launcher)  # forked into the group too: moved out with the rest
    finally:
        for pid in (group / "cgroup.procs").read_text().split():
            (PIDS_CGROUPS / "cgroup.procs").write_text(pid)
        group.rmdir()


# -- environment ----------------------------------------------------------------------


async def test_env_per_worker(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test ``env=``: variables set or removed for one worker, on top of os.environ as
    it is at add_worker (changed after the launcher started), kept across a restart."""
    names = ("PROCOORD_TEST_LATE", "PROCOORD_TEST_OWN", "PROCOORD_TEST_GONE")
    monkeypatch.setenv("PROCOORD_TEST_GONE", "here")
    await coord.add_worker("first", _funcs.Spawner())  # the launcher is running now
    monkeypatch.setenv("PROCOORD_TEST_LATE", "late")
    await coord.add_worker("w", _funcs.Spawner(), env={"PROCOORD_TEST_OWN": "own", "PROCOORD_TEST_GONE": None})
    await coord.add_worker("plain", _funcs.Spawner())
    expected = {"PROCOORD_TEST_LATE": "late", "PROCOORD_TEST_OWN": "own", "PROCOORD_TEST_GONE": None}
    assert (await coord.call(("env", names), TaskPrefs.Required("w")))[0] == expected
    plain, _ = await coord.call(("env", names), TaskPrefs.Required("plain"))
    assert plain == {"PROCOORD_TEST_LATE": "late", "PROCOORD_TEST_OWN": None, "PROCOORD_TEST_GONE": "here"}
    with pytest.raises(WorkerLostError):
        await coord.call(("exit", 1), TaskPrefs.Required("w"))
    assert (await coord.call(("env", names), TaskPrefs.Required("w")))[0] == expected
    with pytest.raises(TypeError, match="env"):
        await coord.add_worker("bad", _funcs.Spawner(), env={"X": 1})  # type: ignore[dict-item]


# -- names and weight -----------------------------------------------------------------


async def test_launcher_and_workers_are_named_in_ps(coord: Coordinator) -> None:
    """Test that the launcher's and the seed's command lines and names say procoord and
    their role, and each worker's command line and process name say its ident."""
    await coord.add_worker("w1", _funcs.double)
    launcher = await _launcher_of(coord, "w1")
    assert launcher.cmdline()[1:3] == ["-m", LAUNCHER_MODULE]
    assert launcher.name() == "procoord launch" and "--seed" not in launcher.cmdline()
    seed = psutil.Process(launcher.ppid())  # the launcher was forked from the seed
    assert seed.name() == "procoord seed" and "--seed" in seed.cmdline()
    worker = psutil.Process((await coord.stats())["w1"].pid)
    assert " ".join(worker.cmdline()).startswith(f"{WORKER_TITLE} w1 ")
    assert worker.name() == "procoord w1"


async def test_worker_loads_only_the_worker_side(coord: Coordinator) -> None:
    """Test, in a live worker, that none of the parent's machinery is loaded, nor psutil
    (the load samples read /proc: the launcher starts without it)."""
    await coord.add_worker("w", _funcs.loaded_modules)
    modules, _ = await coord.call(None)
    assert "procoord._worker.core" in modules
    assert not [m for m in modules if m.startswith(PARENT_ONLY)]
    await coord.add_worker("p", _funcs.is_loaded)
    assert await coord.call("psutil", TaskPrefs.Required("p")) == (False, "p")
    assert await coord.call("procoord._worker.core", TaskPrefs.Required("p")) == (True, "p")


async def test_import_procoord_is_light() -> None:
    """Test that ``import procoord`` loads no submodule and no asyncio; a public name
    loads what it needs on first use."""
    code = (
        "import sys, procoord\n"
        "print(sorted(m for m in sys.modules if m.startswith('procoord')), 'asyncio' in sys.modules)\n"
        "from procoord import Coordinator\n"
        "print(Coordinator.__module__, 'procoord.coordinator' in sys.modules)\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=_script_env()
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    assert out.decode().splitlines() == ["['procoord'] False", "procoord True"]


def test_start_methods_are_the_launcher() -> None:
    """Test that "forkserver" and "spawn" are accepted (both use the launcher) and a
    bare fork is refused."""
    assert LocalBackend().start_method == "forkserver"
    assert LocalBackend("spawn").start_method == "spawn"
    with pytest.raises(ValueError, match="must not be forked"):
        LocalBackend("fork")


async def test_launcher_ends_with_its_coordinator() -> None:
    """Test that a coordinator's own launcher exits when the coordinator closes."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _funcs.double)
        launcher = await _launcher_of(coord, "w")
    assert await _gone([launcher.pid])

"""Retries: a task whose worker dies under it runs again, on the restarted worker."""

from __future__ import annotations

import asyncio
import os
import tempfile

from procoord import Coordinator, TaskPrefs, TaskProcessError, WorkerLostError


def flaky(marker: str) -> str:
    """Crashes the whole process the first time it runs (a segfault in a C library,
    the OOM killer), succeeds the second time."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return f"done by pid {os.getpid()}"


def always_crashes(_: object) -> None:
    os._exit(1)


def raises(_: object) -> None:
    raise ValueError("a bug in the task: retrying would not help")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with Coordinator() as coord:
            await coord.add_worker("w", flaky)
            result, _ = await coord.call(os.path.join(tmp, "marker"), TaskPrefs.Required("w"), retries=2)
            print(f"{result}, after the first process died")

            await coord.add_worker("doomed", always_crashes)
            try:
                await coord.call(None, TaskPrefs.Required("doomed"), retries=2)
            except WorkerLostError as exc:
                print(f"gave up after {exc.attempts} attempts")

            await coord.add_worker("buggy", raises)
            try:
                await coord.call(None, TaskPrefs.Required("buggy"), retries=2)
            except TaskProcessError:
                print("an exception the task raised is never retried")
            stats = await coord.stats()
            print(f"retries counted in stats: {stats['w'].retries} + {stats['doomed'].retries}")


if __name__ == "__main__":
    asyncio.run(main())

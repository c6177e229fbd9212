"""An interface of several methods served by four cats, each in a worker process.

Ten jobs run at once: each asks any cat to locate a ball, asks the cat that found it
(preferably) to upgrade the ball with a crystal, then tells that same cat to meow three
times without waiting for it. Domesticated cats get faster with experience; the robot
cat always takes the same time, so routing by measured speed sends it less work.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Hashable
from dataclasses import dataclass, replace

import procoord
from procoord import Coordinator, format_stats
from procoord.interface import InterfaceClient


@dataclass(frozen=True)
class Ball:
    """A ball somewhere in the house."""

    name: str
    position: tuple[float, float, float]
    material: str = "rubber"


@dataclass(frozen=True)
class Crystal:
    """What a ball can be upgraded with."""

    material: str


@procoord.interface
class CatFamily:
    """What every cat can do."""

    async def locate_object(self, obj: Ball) -> tuple[float, float, float] | None:
        """Find ``obj``; None when it cannot be found."""
        ...

    async def upgrade(self, obj: Ball, material: Crystal) -> Ball:
        """Return ``obj`` made of ``material`` (a worker cannot change the caller's ball)."""
        ...

    async def meow(self) -> bool:
        """Meow once; True if anyone listened."""
        ...

    async def meow_repeatedly(self, times: int) -> None:
        """A default body: runs inside the worker, calling the cat's own ``meow``."""
        for _ in range(times):
            await self.meow()


class DomesticatedCat(CatFamily.Processor):
    """Slow at first, faster with every task: waits ``60 - exp`` ms, gains 5 exp per task."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.exp = 0

    async def _work(self) -> None:
        await asyncio.sleep(max(60 - self.exp, 5) / 1000)
        self.exp += 5

    async def locate_object(self, obj: Ball) -> tuple[float, float, float] | None:
        await self._work()
        return obj.position

    async def upgrade(self, obj: Ball, material: Crystal) -> Ball:
        await self._work()
        return replace(obj, material=material.material)

    async def meow(self) -> bool:
        await self._work()
        print(f"    {self.name} (exp {self.exp}): meow")
        return True


class RobotCat(CatFamily.Processor):
    """Always takes 60 ms."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def locate_object(self, obj: Ball) -> tuple[float, float, float] | None:
        await asyncio.sleep(0.06)
        return obj.position

    async def upgrade(self, obj: Ball, material: Crystal) -> Ball:
        await asyncio.sleep(0.06)
        return replace(obj, material=material.material)

    async def meow(self) -> bool:
        await asyncio.sleep(0.06)
        print(f"    {self.name}: BEEP. MEOW.")
        return True


async def job(family: InterfaceClient[CatFamily], n: int) -> Hashable:
    """Locate a ball with any cat, upgrade it on that cat, then let it meow."""
    ball = Ball(f"ball-{n}", (random.random(), random.random(), 0.0))
    position, cat = await family.any().locate_object(ball).join()
    print(f"job {n}: {cat} found {ball.name} at {position}")
    upgraded, cat = await family.prefer(cat).upgrade(ball, Crystal("amethyst")).join()
    print(f"job {n}: {cat} made {upgraded.name} of {upgraded.material}")
    await family.require(cat).meow_repeatedly(3)  # fire and forget: queued, not joined
    return cat


async def main() -> None:
    async with CatFamily(Coordinator(queue_threshold=3)) as family:
        await family.add_worker("Maple", DomesticatedCat("Maple"))
        await family.add_worker("Suduko", DomesticatedCat("Suduko"))
        await family.add_worker("Autocat", RobotCat("Autocat"))
        await family.add_worker("Oktocat", RobotCat("Oktocat"))
        cats = await asyncio.gather(*(job(family, n) for n in range(10)))
        print("jobs per cat:", {cat: cats.count(cat) for cat in sorted(set(cats), key=str)})
        print(format_stats(await family.stats()))
    # Leaving `async with` waited for the queued meows, then stopped every cat.


if __name__ == "__main__":
    asyncio.run(main())

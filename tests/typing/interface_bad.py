"""Checked by mypy (tests/test_interface.py): each line marked `# E` must be an error."""

from __future__ import annotations

import procoord
from procoord.interface import InterfaceClient


class Ball:
    pass


@procoord.interface
class Family:
    async def locate(self, obj: Ball, *, fast: bool = False) -> tuple[float, float] | None:
        raise NotImplementedError

    async def meow(self) -> bool:
        raise NotImplementedError


async def misuse(family: InterfaceClient[Family]) -> None:
    family.any()(Family.locate, "not a ball")  # E
    family.any()(Family.locate, Ball(), fast="yes")  # E
    family.any()(Family.meow, 1)  # E
    ok, _ = await family.any()(Family.meow).join()
    text: str = ok  # E
    print(text)
    await family.any()(len, "abc")  # E

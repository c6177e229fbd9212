"""Checked by mypy (tests/test_interface.py): the typed spellings of an interface client."""

from __future__ import annotations

from collections.abc import Hashable
from typing import assert_type

import procoord
from procoord import JoinHandle
from procoord.interface import InterfaceClient, PendingCall


class Ball:
    pass


@procoord.interface
class Family:
    async def locate(self, obj: Ball, *, fast: bool = False) -> tuple[float, float] | None:
        raise NotImplementedError

    async def meow(self) -> bool:
        raise NotImplementedError


async def use(family: InterfaceClient[Family]) -> None:
    call = family.any()(Family.locate, Ball(), fast=True)
    assert_type(call, PendingCall[tuple[float, float] | None])
    handle = await call
    assert_type(handle, JoinHandle[tuple[tuple[float, float] | None, Hashable]])
    position, worker = await family.prefer("Maple")(Family.locate, Ball()).join()
    assert_type(position, tuple[float, float] | None)
    assert_type(worker, Hashable)
    ok, _ = await family.require("Maple")(Family.meow).join()
    assert_type(ok, bool)


async def make() -> None:
    async with InterfaceClient(Family, queue_threshold=3) as family:
        assert_type(family, InterfaceClient[Family])
        await use(family)

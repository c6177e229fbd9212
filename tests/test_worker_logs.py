"""Log records a processor makes in its worker reach the parent's
"procoord.worker.<ident>" logger, with their level, in real worker processes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from procoord import Coordinator

from . import _funcs
from ._run import run_python


async def test_records_reach_the_worker_logger_with_their_level(caplog: pytest.LogCaptureFixture) -> None:
    """Test levels, message arguments, the traceback text, the origin, and that records
    below the parent's level are not sent; also records logged while the processor is built."""
    caplog.set_level(logging.INFO, logger="procoord.worker")
    async with Coordinator() as coord:
        coord.register("logging", _funcs.logging_factory)
        await coord.add_worker("w", "logging")
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            assert await coord.call((level, logging.getLevelName(level))) == (logging.getLevelName(level), "w")
        pid = (await coord.stats())["w"].pid
    records = [r for r in caplog.records if r.name == "procoord.worker.w"]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, "loading the model"),
        (logging.INFO, "said INFO"),
        (logging.WARNING, "said WARNING"),
        (logging.ERROR, "failed: ERROR"),
    ]
    assert records[0].worker_logger == "mylib.setup"  # type: ignore[attr-defined]
    assert all(r.worker_pid == pid for r in records)  # type: ignore[attr-defined]
    assert records[1].worker_logger == "mylib" and records[1].funcName == "log_then_return"  # type: ignore[attr-defined]
    assert records[3].exc_text is not None and "ValueError: inside" in records[3].exc_text


UNCONFIGURED = """
import asyncio, logging
from procoord import Coordinator

def warn(task):
    logging.getLogger("mylib").warning("careful with %s", task)
    logging.getLogger("mylib").info("not shown")
    return task

async def main():
    async with Coordinator() as coord:
        await coord.add_worker("w", warn)
        print(await coord.call("knives"))

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_unconfigured_application_sees_a_processor_warning_once(tmp_path: Path) -> None:
    """Test that without logging configured, a processor's warning shows on stderr once,
    as in a plain script (Python's last-resort handler), and INFO does not."""
    script = tmp_path / "warn.py"
    script.write_text(UNCONFIGURED)
    proc = run_python([str(script)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('knives', 'w')"
    assert proc.stderr.count("careful with knives") == 1, proc.stderr
    assert "not shown" not in proc.stderr

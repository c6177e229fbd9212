"""The README as a newcomer reads it: an install section first, a short first program,
and every python block either a program that runs as it stands (run here, in a
subprocess, against this checkout) or a fragment marked as continuing the one before."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._run import ROOT, run_python

README = ROOT / "README.md"

# The first line of a block that is a fragment of the program before it.
FRAGMENT_MARK = "# continues the example above"


@dataclass(frozen=True)
class Block:
    line: int  # where its code starts in the README (1-based)
    code: str

    @property
    def fragment(self) -> bool:
        return self.code.startswith(FRAGMENT_MARK)


def python_blocks(text: str) -> list[Block]:
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE):
        blocks.append(Block(text.count("\n", 0, match.start(1)) + 1, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text())
PROGRAMS = [b for b in BLOCKS if not b.fragment]
FRAGMENTS = [b for b in BLOCKS if b.fragment]


def test_install_section_and_first_program_come_first() -> None:
    """Test the first screen: the first section is Install (pip install procoord, extras
    quoted), the next is a first program of about ten lines that prints its result."""
    text = README.read_text()
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert sections[:2] == ["Install", "A first program"]
    install = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "pip install procoord\n" in install
    assert "pip install 'procoord[ray]'" in install
    assert not re.search(r"pip install procoord\[", text), "an extra must be quoted for the shell"
    first = BLOCKS[0]
    assert not first.fragment and "print(" in first.code
    assert len(first.code.strip().splitlines()) <= 15


@pytest.mark.parametrize("block", PROGRAMS, ids=lambda b: f"line{b.line}")
def test_program_runs(block: Block, tmp_path: Path) -> None:
    """Test that a complete program of the README runs to the end, as it stands."""
    script = tmp_path / f"readme_line{block.line}.py"
    script.write_text(block.code)
    proc = run_python([str(script)], cwd=tmp_path)
    assert proc.returncode == 0, f"README line {block.line}:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def test_first_program_prints_what_it_says() -> None:
    """Test the first program's output against the comment that shows it."""
    proc = run_python(["-c", BLOCKS[0].code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: f"line{b.line}")
def test_fragment_follows_a_program_and_parses(block: Block) -> None:
    """Test that a marked fragment comes after a complete program and is valid Python as
    the body of a coroutine (where its awaits are)."""
    assert any(p.line < block.line for p in PROGRAMS), "a fragment needs a program before it"
    ast.parse("async def fragment():\n" + textwrap.indent(block.code, "    "))

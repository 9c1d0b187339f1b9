"""Regenerate the command output shown in README.md and docs/*.md: `python docs/regen.py`.

In a fenced block, a line `$ gradverify …` is a command and the lines after it, up to the next
`$ ` line or the end of the block, are its output (stdout, then stderr, as a terminal shows
them); `$ echo $?` prints the previous command's exit code. This script runs every command from
the repository's root, as a user who cloned it would, and writes the real output back.
tests/test_docs.py runs the same and fails when a page is out of date, so the docs cannot drift.
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```[a-z]*$")


def run(command: str) -> tuple[str, int]:
    """What `command` prints and its exit code (gradverify in-process, 200 columns, no colour)."""
    from typer.testing import CliRunner

    from gradverify.cli import app

    args = shlex.split(command)
    assert args[0] == "gradverify", command
    res = CliRunner().invoke(app, args[1:], env={"COLUMNS": "200", "NO_COLOR": "1"})
    return res.stdout + res.stderr, res.exit_code


def _command_blocks(lines: list[str]):
    """(start, end) of every fenced block whose first line is a `$ gradverify` command."""
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]) and i + 1 < len(lines) and lines[i + 1].startswith("$ gradverify"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            yield i + 1, end
            i = end
        i += 1


def regenerate(text: str) -> str:
    """The page with every command's output replaced by a fresh run's."""
    lines = text.split("\n")
    out, last = [], 0
    for start, end in _command_blocks(lines):
        out += lines[last:start]
        code = 0
        for line in lines[start:end]:
            if not line.startswith("$ "):
                continue
            out.append(line)
            if line == "$ echo $?":
                out.append(str(code))
                continue
            printed, code = run(line[2:])
            out += [row.rstrip() for row in printed.rstrip("\n").split("\n")] if printed.strip() else []
        last = end
    return "\n".join(out + lines[last:])


def main() -> None:
    os.chdir(ROOT)
    for page in PAGES:
        new = regenerate(page.read_text(encoding="utf-8"))
        page.write_text(new, encoding="utf-8")
    print(f"regenerated {len(PAGES)} pages", file=sys.stderr)


if __name__ == "__main__":
    main()

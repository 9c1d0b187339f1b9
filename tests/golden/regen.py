"""Regenerate the golden outputs: `python tests/golden/regen.py`.

tests/test_golden.py runs `gradverify check` on every bundled config and every zoo case and
compares its table and JSON with the files here, byte for byte, so a refactoring that changes what
users see is caught. When a change is meant to alter the output, run this script and read the diff
(`git diff tests/golden`) before committing it: every changed line should be one you intended.
"""
from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: bench_large takes ~15 s: its output is pinned by the bench, not here; cnn.yaml (~30 s, 69,197
#: elements) by docs/layers.md's block (tests/test_docs.py) and tests/test_cnn_configs.py
SKIP = {"bench_large.yaml", "cnn.yaml"}


def cases() -> list[Path]:
    found = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "examples" / "zoo").glob("*.yaml"))
    return [p for p in found if p.name not in SKIP]


def golden_name(path: Path) -> str:
    return f"{path.parent.name}__{path.stem}"


def outputs(path: Path) -> dict[str, str]:
    """What `gradverify check` prints for the config, as a table and as JSON (run from the
    repository's root with relative paths, as a user would)."""
    from gradverify.cli import app

    rel = str(path.relative_to(ROOT))
    runner = CliRunner()
    out = {}
    for fmt in ("table", "json"):
        res = runner.invoke(app, ["check", rel, "--format", fmt], env={"COLUMNS": "200"})
        out[fmt] = f"exit {res.exit_code}\n{res.stdout}"
    return out


def main() -> None:
    import os

    import numpy as np

    os.chdir(ROOT)
    (HERE / "NUMPY").write_text(np.__version__ + "\n")
    for path in cases():
        for fmt, text in outputs(path).items():
            (HERE / f"{golden_name(path)}.{'txt' if fmt == 'table' else 'json'}").write_text(text, encoding="utf-8")
    print(f"wrote {2 * len(cases())} files to {HERE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()

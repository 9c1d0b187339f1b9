"""`gradverify init` and `gradverify schema`: a starter config, and the config format's schema."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import GradverifyError
from .common import DEFAULT_NAME, _console, _emit_json, _write, app, handled


@app.command()
@handled
def init(path: Path = typer.Argument(Path(DEFAULT_NAME), help="Where to write it."),
         layers: str = typer.Option("4,16,3", "--layers", help="Widths from input to output."),
         activation: str = typer.Option("relu", "--activation", help="Hidden layers' activation."),
         loss: str = typer.Option("softmax_cross_entropy", "--loss", help="The loss."),
         rows: int = typer.Option(8, "--rows", help="Input rows (the batch)."),
         seed: int = typer.Option(0, "--seed", help="Seed for the random weights."),
         conv: Optional[str] = typer.Option(None, "--conv", help="A CNN starter: FILTERS:KERNEL conv blocks "
                                            "(e.g. 8:3 or 8:3,16:3), then a max pool and an affine layer to "
                                            "the last --layers width."),
         image: str = typer.Option("3,8,8", "--image", help="With --conv: each image's C,H,W."),
         op: Optional[str] = typer.Option(None, "--op", help="A starter that checks one op of yours alone, "
                                          "e.g. layers.py:affine (file next to the config).")) -> None:
    """Write a commented starter config with random weights that passes `check`."""
    from ..options import integer

    seed, rows = integer(seed, "seed", cli=True), integer(rows, "rows", cli=True, minimum=1)
    widths = _ints(layers, "--layers", "widths like 4,16,3")
    text = _starter_text(path, widths, activation, loss, rows, seed, conv, image, op)
    if path.exists():
        raise GradverifyError(f"{path} exists: not overwriting it (choose another path)")
    _write(path, text, "config")
    if path.suffix in (".yaml", ".yml"):
        _console(stderr=True).print(f"gradverify: wrote {path}; check it with: gradverify check {path}",
                                    markup=False, soft_wrap=True)


def _ints(text: str, option: str, example: str) -> list[int]:
    try:
        return [int(w) for w in text.split(",")]
    except ValueError:
        raise GradverifyError(f"{option} {text!r}: expected {example}") from None


def _starter_text(path: Path, widths: List[int], activation: str, loss: str, rows: int, seed: int,
                  conv: Optional[str], image: str, op: Optional[str]) -> str:
    """The starter that the options ask for: one op (--op), a CNN (--conv) or an MLP."""
    from .. import starter

    if op is not None:
        if not starter.is_custom_ref(op):
            raise GradverifyError(f"--op {op!r}: expected file.py:name, e.g. layers.py:affine")
        code = path.parent / op.split(":", 1)[0]
        source = code.read_text(encoding="utf-8", errors="replace") if code.is_file() else None
        return starter.op_starter(op, source, seed)
    if conv is not None:
        sides = _ints(image, "--image", "C,H,W like 3,8,8")
        if len(sides) != 3:
            raise GradverifyError(f"--image {image!r}: expected C,H,W like 3,8,8")
        return starter.conv_starter(starter.parse_conv(conv), (sides[0], sides[1], sides[2]), widths[-1], rows, seed)
    return starter.starter(widths, activation, loss, rows, seed)


@app.command()
@handled
def schema(report: bool = typer.Option(False, "--report", help="The schema of the JSON report "
                                       "(check --format json) instead.")) -> None:
    """Print the JSON Schema of the config format (for editors: see the README)."""
    from ..report_schema import report_schema
    from ..schema import schema as make

    _emit_json(report_schema() if report else make())

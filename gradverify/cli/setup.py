"""`gradverify init` and `gradverify schema`: a starter config, and the config format's schema."""
from __future__ import annotations

from pathlib import Path

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
         seed: int = typer.Option(0, "--seed", help="Seed for the random weights.")) -> None:
    """Write a commented starter config with random weights that passes `check`."""
    from ..options import integer
    from ..starter import starter

    seed, rows = integer(seed, "seed", cli=True), integer(rows, "rows", cli=True, minimum=1)
    try:
        widths = [int(w) for w in layers.split(",")]
    except ValueError:
        raise GradverifyError(f"--layers {layers!r}: expected widths like 4,16,3") from None
    text = starter(widths, activation, loss, rows, seed)
    if path.exists():
        raise GradverifyError(f"{path} exists: not overwriting it (choose another path)")
    _write(path, text, "config")
    if path.suffix in (".yaml", ".yml"):
        _console(stderr=True).print(f"gradverify: wrote {path}; check it with: gradverify check {path}",
                                    markup=False, soft_wrap=True)


@app.command()
def schema(report: bool = typer.Option(False, "--report", help="The schema of the JSON report "
                                       "(check --format json) instead.")) -> None:
    """Print the JSON Schema of the config format (for editors: see the README)."""
    from ..report_schema import report_schema
    from ..schema import schema as make

    _emit_json(report_schema() if report else make())

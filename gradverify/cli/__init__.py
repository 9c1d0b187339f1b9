"""The command line: the only package that prints and chooses exit codes.

Exit codes: 0 gradients agree (kinks are reported, not failures), 1 a gradient mismatch (or a
kink under --strict), 2 bad input (config, node name, usage), 130 interrupted.

One module per group of commands (check; node, sweep and graph; init and schema), all on the one
`app` from `common`.
"""
from __future__ import annotations

import os

# gradverify evaluates two chunks of perturbed copies at once, one per core; BLAS threads on top
# of that oversubscribe the cores (measured: 25% slower on 2 cores). Set before numpy loads; a
# value the user set wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

import typer  # noqa: E402

from .. import __version__  # noqa: E402
from . import check, inspect, setup  # noqa: E402,F401  (each registers its commands on app)
from .common import BUNDLED, DEFAULT_NAME, DEFAULT_NAMES, app  # noqa: E402,F401


def _version(value: bool):
    if value:
        typer.echo(f"gradverify {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """gradverify: is your hand-written backward right, and if not, where is it wrong?"""


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # during import or argument parsing
        sys.stderr.write("gradverify: interrupted\n")
        sys.exit(130)

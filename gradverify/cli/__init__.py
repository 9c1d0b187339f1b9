"""The command line: the only package that prints and chooses exit codes.

Exit codes: 0 gradients agree (kinks are reported, not failures), 1 a gradient mismatch (or a
kink under --strict), 2 bad input (config, node name, usage), 120 stdout could not take the whole
report (its reader left, a full disk), 130 interrupted.

One module per group of commands (check; node, sweep and graph; init and schema), all on the one
`app` from `common`.
"""
from __future__ import annotations

import gc
import os

# Start-up creates ~10^5 long-lived objects (typer, numpy, pydantic, gradverify's modules) and
# next to no garbage; the cyclic collector's passes over them cost ~10% of a small check's whole
# process (bench/startup.py, bench/RESULTS.md "Start-up"). Off while this package imports; `run()`
# keeps it off through argument parsing, and the command freezes what start-up made and turns it
# back on before it does anything (`common.resume_gc`).
_gc_was_enabled = gc.isenabled()
gc.disable()

# gradverify evaluates two chunks of perturbed copies at once, one per core; BLAS threads on top
# of that oversubscribe the cores (measured: 25% slower on 2 cores). Set before numpy loads; a
# value the user set wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sys  # noqa: E402

import typer  # noqa: E402

from .. import __version__, output  # noqa: E402
from . import check, common, inspect, setup  # noqa: E402,F401  (each registers its commands on app)
from .common import BUNDLED, DEFAULT_NAME, DEFAULT_NAMES, app  # noqa: E402,F401
from .leave import UNDELIVERED, exit_now  # noqa: E402

if _gc_was_enabled:
    gc.enable()


def _version(value: bool):
    if value:
        typer.echo(f"gradverify {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """gradverify: is your hand-written backward right, and if not, where is it wrong?"""


def _keep_freed_memory() -> None:
    """glibc gives every freed block over 128 KB back to the kernel and maps the next one afresh:
    a check allocates and frees chunks of perturbed copies thousands of times, and the page
    faults cost as much as the arithmetic (configs/cnn.yaml: 2.0 s of a 3.8 s process in the
    kernel; bench/process.py). In gradverify's own process only, blocks up to 32 MB come from
    the heap and freed memory is kept up to 256 MB. Thresholds the user set in the environment
    (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) win; elsewhere than glibc, nothing."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in (
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)


def _stand_in_for_closed_streams() -> None:
    """`gradverify check net.yaml >&-`: Python gives a closed descriptor 1 or 2 a sys.stdout or
    sys.stderr of None; the command writes to /dev/null instead, and its exit status is the
    verdict's (it used to be an internal error)."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (the process's)


def invoke() -> int | str | None:
    """The command line's work up to its exit status: SystemExit's code (typer ends every command
    with one), 130 for a Ctrl-C during import or argument parsing, 120 when stdout could not take
    click's own text (--help, --version)."""
    _keep_freed_memory()
    _stand_in_for_closed_streams()
    output.guard_standard_streams()
    if gc.isenabled():
        common.gc_paused = True  # --help, --version and usage errors exit before resume_gc
        gc.disable()
    try:
        app()
    except KeyboardInterrupt:  # during import or argument parsing
        sys.stderr.write("gradverify: interrupted\n")
        return 130
    except output.Undelivered:  # --help, --version, a usage error's text (the commands': handled)
        return UNDELIVERED
    except SystemExit as done:
        return done.code
    return 0


def run() -> None:
    """Console-script entry point."""
    exit_now(invoke())

"""How long `gradverify check configs/seed.yaml` takes as a whole process, next to its floors.

    python bench/startup.py [N] [--before DIR] [--python OTHER_PYTHON]

Not run by the tests. Every command runs N times (default 7), round-robin so that load from other
processes on a shared machine falls on all of them alike; each line is the median of its N runs,
all from this one run: wall-clock and CPU time (user + system of the child: on a shared machine the
steadier of the two). The floors:

  python -c pass                 the interpreter alone;
  import numpy                   what any check needs to compute anything;
  import numpy + typer + ...     every dependency a check loads: numpy, typer, rich's console
                                 and table, yaml;
  ... + pydantic                 what typer 0.29's own coercion would add to that (it builds
                                 a pydantic TypeAdapter for every option; gradverify answers
                                 plain values without it: gradverify/cli/coercion.py).

`--before DIR` also times the command from another copy of the `gradverify` package (DIR holds a
`gradverify/` folder, e.g. made by `git archive <rev> gradverify | tar -x -C DIR`), run from this
checkout's directory, for a before/after ratio from the same run; this checkout is timed again
started the same way (`runpy` with the copy first on sys.path: ~10 ms more than `-m`), so the
ratio compares like with like. `--python OTHER_PYTHON` also
times this checkout's code under another environment's interpreter and dependencies (e.g. a venv
with typer 0.27, which parses arguments without pydantic), next to that environment's floor.
Every copy of gradverify is byte-compiled first (as `pip install` does): no run pays for compiling.

Last, the CPU time of each phase inside one check process (import typer, numpy, gradverify;
typer's parsing; the check; drawing the table), median of N: where the time goes.
"""
from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
DEPS = "import numpy, typer, rich.console, rich.table, yaml"


def commands(before: str | None, other: str | None) -> list[tuple[str, list[str], str | None]]:
    """(label, argv, PYTHONPATH or None) of every command timed."""
    check = [PY, "-m", "gradverify", "check", "configs/seed.yaml"]
    json = check + ["--format", "json"]
    rows = [("python -c pass", [PY, "-c", "pass"], None),
            ("python -c 'import numpy'", [PY, "-c", "import numpy"], None),
            ("import numpy, typer, rich, yaml", [PY, "-c", DEPS], None),
            ("import numpy, typer, rich, yaml + pydantic", [PY, "-c", DEPS + ", pydantic"], None),
            ("gradverify --version", [PY, "-m", "gradverify", "--version"], None),
            ("gradverify check configs/seed.yaml", check, None),
            ("gradverify check ... --format json", json, None)]
    if before:  # both copies started alike: first on sys.path, ahead of the working directory
        for name, path in (("after", str(ROOT)), ("before", before)):
            run = [PY, "-c", f"import runpy, sys; sys.path.insert(0, {path!r}); sys.argv[0] = 'gradverify'; "
                             "runpy.run_module('gradverify', run_name='__main__', alter_sys=True)"]
            rows += [(f"{name}: gradverify --version", run + ["--version"], None),
                     (f"{name}: gradverify check configs/seed.yaml", run + check[3:], None),
                     (f"{name}: ... --format json", run + json[3:], None)]
    if other:  # this checkout's gradverify under another environment's dependencies
        rows += [("--python: import numpy, typer, rich, yaml", [other, "-c", DEPS], None),
                 ("--python: gradverify check configs/seed.yaml", [other] + check[1:], str(ROOT))]
    return rows


#: run in a child: CPU time of each phase of one `gradverify check configs/seed.yaml`, in-process
PHASES = r"""
import io, sys, time
clock = time.process_time
t0 = clock()
import typer
t1 = clock()
import numpy
t2 = clock()
import gradverify.cli as cli
import typer.core
from gradverify.cli import check
t3 = clock()
marks = {"adapters": 0.0}
def timed(name, fn):
    def wrapper(*a, **k):
        start = clock()
        try:
            return fn(*a, **k)
        finally:
            marks[name] = marks.get(name, 0.0) + clock() - start
            marks.setdefault(name + "@", start)
    return wrapper
import typer._coercion
typer.core.build_runtime_param = timed("adapters", typer.core.build_runtime_param)
typer._coercion.build_runtime_param = typer.core.build_runtime_param  # gradverify's fallback
check._execute = timed("check", check._execute)
check._print_check = timed("draw", check._print_check)
sys.argv = ["gradverify", "check", "configs/seed.yaml"]
sys.stdout = io.StringIO()
cli.invoke()  # the console script's work; cli.run() would then leave with os._exit
t4 = clock()
sys.stdout = sys.__stdout__
print(t1 - t0, t2 - t1, t3 - t2, marks["check@"] - t3 - marks["adapters"], marks["adapters"],
      marks["check"], marks["draw"], t4 - t0)
"""
PHASE_NAMES = ("import typer", "import numpy", "import gradverify.cli (the rest)",
               "typer: build the command, parse; settings",
               "typer's own coercion (pydantic): where not plain",
               "the check (imports config, checker, yaml)", "drawing the table (imports rich)",
               "in-process total")


def phases(n: int) -> None:
    """Median CPU time of each phase over n child processes."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    runs = [[float(x) for x in subprocess.run([PY, "-c", PHASES], cwd=ROOT, env=env, check=True,
                                              capture_output=True, text=True).stdout.split()]
            for _ in range(n)]
    print(f"in-process CPU time by phase, median of {n}")
    for k, name in enumerate(PHASE_NAMES):
        print(f"  {name:<46} {statistics.median(r[k] for r in runs) * 1000:6.1f} ms")


def once(argv: list[str], pythonpath: str | None) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of one run; CPU is user + system time of the child process."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # as gradverify's CLI sets them, for the floors too
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):  # 1: a mismatch is still a whole run
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-400:]}")
    return elapsed, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)


def _option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    if flag not in argv:
        return None, argv
    at = argv.index(flag)
    return argv[at + 1], argv[:at] + argv[at + 2:]


def main(argv: list[str]) -> None:
    before, argv = _option(argv, "--before")
    before = str(Path(before).resolve()) if before else None
    other, argv = _option(argv, "--python")
    n = int(argv[0]) if argv else 7
    for package in [ROOT / "gradverify"] + ([Path(before) / "gradverify"] if before else []):
        compileall.compile_dir(str(package), quiet=1)
    rows = commands(before, other)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in rows}
    for _label, cmd, path in rows:  # one warm-up each: page cache, not part of the figures
        once(cmd, path)
    for _ in range(n):
        for label, cmd, path in rows:
            times[label].append(once(cmd, path))
    print(f"whole process, median of {n} runs (min..max), {os.cpu_count()} cores; wall-clock and CPU time")
    for label, _, _ in rows:
        wall, cpu = [t[0] for t in times[label]], [t[1] for t in times[label]]
        print(f"  {label:<46} wall {statistics.median(wall):6.3f} s ({min(wall):.3f}..{max(wall):.3f})"
              f"   CPU {statistics.median(cpu):6.3f} s ({min(cpu):.3f}..{max(cpu):.3f})")
    phases(n)


if __name__ == "__main__":
    main(sys.argv[1:])

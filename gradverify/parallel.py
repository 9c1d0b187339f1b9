"""Where a check's work runs: BLAS's own threads, and chunks of perturbed copies in other processes.

* `blas_single_thread()`: numpy's BLAS at one thread for the duration of a check, from the Python
  API as from the command line (whose environment variables only work before numpy loads).
  gradverify runs one chunk per core already; BLAS threads on top of that oversubscribe the cores,
  and on a busy machine a small matmul's threads spin waiting for each other (measured here: a
  check of a custom affine took 30 s of CPU instead of 4.8 s).
* `Jobs`: the chunks of a node whose perturbations pass through a user's Python op (which holds
  the GIL, so threads cannot run it in parallel) sent to a `concurrent.futures.Executor` —
  `--jobs N` makes a process pool; the Python API's `executor=` takes any (a Dask
  `Client(...).get_executor()`, a Ray pool). Each task carries the graph and the plain pass,
  pickled once per check; a worker unpickles them once per check, which loads the user's files
  from the very source the check loaded (custom.PythonOp pickles the source text, not the path).
"""
from __future__ import annotations

import contextvars
import ctypes
import os
import pickle
import sys
import types
import uuid
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path

from . import usercode
from .errors import UserCodeError

#: names of OpenBLAS's thread-count setter in the builds numpy ships (scipy-openblas, 64-bit
#: interface) and in a system OpenBLAS
_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")


def _openblas_libraries() -> list[str]:
    """Paths of the OpenBLAS libraries this process has loaded (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def _thread_controls() -> list[tuple]:
    """(get, set) pairs for every loaded OpenBLAS."""
    out = []
    for path in _openblas_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
        put = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
        if get is not None and put is not None:
            out.append((get, put))
    return out


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """OpenBLAS at one thread inside, restored after. A thread count the user chose in the
    environment (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS) wins; only numpy's loaded OpenBLAS is
    touched (with another BLAS, or none loaded yet, nothing happens)."""
    if "numpy" not in sys.modules or any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        yield
        return
    controls = _thread_controls()
    before = [int(get()) for get, _ in controls]
    for _, put in controls:
        put(1)
    try:
        yield
    finally:
        for (_, put), n in zip(controls, before):
            put(n)


def pickled(obj) -> bytes | None:
    """obj pickled for a worker, or None when it cannot be (a lambda, a local function: those
    checks run in this process)."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # pickling runs user code (__reduce__, __getstate__): anything may come out
        return None


#: in a worker: the payloads unpickled so far, by the check's key (a worker serves one check at
#: a time in practice; two are kept so that interleaved checks do not unpickle every task)
_CACHE: dict[str, object] = {}


def _payload(key: str, blob: bytes):
    if key not in _CACHE:
        while len(_CACHE) >= 2:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = pickle.loads(blob)
    return _CACHE[key]


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, a container quota)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def process_pool(jobs: int):
    """A pool of `jobs` processes (fork where the platform has it: the workers start with
    gradverify and numpy loaded), or None for jobs <= 1."""
    if jobs <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)


class WorkerLoadError(Exception):
    """The user's file did not load in a worker (its top level did something that works only
    once: removed a folder, read stdin): the check runs that node in the main process."""


class SourceFunction:
    """A function of a user file gradverify loaded (usercode.load_source), as the source text it
    compiled: a worker compiles the same text (once per worker and source), never reads the
    file again. `package`: the file's package, for its relative imports; `root`: the folder its
    imports are found from."""

    _modules: dict[tuple[str, int], object] = {}

    def __init__(self, path: str, source: bytes, name: str, package: str, root: str):
        self.path, self.source, self.name, self.package, self.root = path, source, name, package, root

    @classmethod
    def of(cls, fn):
        """`fn` as a SourceFunction when it comes from a user file; as it is otherwise."""
        g = getattr(fn, "__globals__", None)
        qualname = getattr(fn, "__qualname__", "<")
        if not isinstance(fn, types.FunctionType) or not isinstance(g, dict) or "." in qualname \
                or "<" in qualname or not g.get("__file__"):
            return fn  # a method, a nested function, a lambda: pickled as it is, if it can be
        source = g.get("__gradverify_source__")  # a lone file
        if source is not None:
            return cls(g["__file__"], source, qualname, "", str(Path(g["__file__"]).parent))
        source = getattr(g.get("__loader__"), "source", None)  # a module of the user's package
        package = g.get("__package__") or ""
        if source is None or not package:
            return fn  # importable as it is
        root = Path(g["__file__"]).parents[len(package.split("."))]
        return cls(g["__file__"], source, qualname, package, str(root))

    def load(self):
        key = (self.path, hash(self.source))
        if key not in self._modules:
            stem = Path(self.path).stem
            module = types.ModuleType(f"{self.package}.{stem}" if self.package else f"gradverify_worker_{stem}")
            module.__file__, module.__package__ = self.path, self.package or None
            sys.path.insert(0, self.root)  # its imports: `import helpers`, `from .helpers import f`
            try:
                exec(compile(self.source, self.path, "exec", dont_inherit=True), module.__dict__)
            except BaseException as e:  # noqa: B036  (its top level may do anything, exit included)
                raise WorkerLoadError(f"{self.path}: {type(e).__name__}: {e}") from None
            finally:
                sys.path.remove(self.root)
            self._modules[key] = module
        return getattr(self._modules[key], self.name)


_CURRENT: contextvars.ContextVar[Offload | None] = contextvars.ContextVar("gradverify_offload", default=None)


def current() -> Offload | None:
    """The executor of the check running in this context, if it has one."""
    return _CURRENT.get()


@contextmanager
def offloading(executor=None, jobs: int = 1) -> Iterator[None]:
    """Within: nodes upstream of a user's op are estimated on `executor` (any
    concurrent.futures.Executor, not shut down here), or on a pool of `jobs` processes made on
    first use and shut down after. Neither: in this process."""
    if executor is None and jobs <= 1:
        yield
        return
    offload = Offload(executor, jobs)
    token = _CURRENT.set(offload)
    try:
        yield
    finally:
        _CURRENT.reset(token)
        offload.close()


class Offload:
    """An executor and the check's graph pickled once for it."""

    def __init__(self, executor, jobs: int):
        self._given, self._pool, self.jobs = executor, None, jobs
        self._blobs: dict[tuple, tuple[str, bytes | None]] = {}
        self.failed = False  # a worker could not load the user's file: the rest runs here
        self.broken = False  # a worker died (usercode.worker_died)
        self.workers = jobs if executor is None else int(getattr(executor, "_max_workers", 0) or usable_cores())

    @property
    def executor(self):
        if self._given is not None:
            return self._given
        if self._pool is None:
            self._pool = process_pool(self.jobs)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:  # a broken pool is not waited for: CPython 3.10's can hang there
            self._pool.shutdown(wait=not self.broken, cancel_futures=True)

    def payload(self, graph, values) -> tuple[str, bytes | None]:
        """(key, the graph and plain pass pickled), None when they cannot be pickled."""
        # the ops' shortcuts go into the key: the checker turns a user op's off after a recheck,
        # and the workers must see that (a fresh pickle)
        ident = (id(graph), id(values), tuple(n.op.shortcuts for n in graph.nodes.values() if n.op is not None))
        if ident not in self._blobs:
            self._blobs[ident] = (uuid.uuid4().hex, pickled((graph, values)))
        return self._blobs[ident]

    def map(self, graph, values, name: str, how: tuple, index, progress=None):
        """The node's estimate in pieces on the workers (see estimate.estimate_all), or None
        when its graph cannot travel (a lambda, a model object): then it runs here."""
        key, blob = self.payload(graph, values)
        if blob is None or self.failed:
            return None
        try:
            return self._gather(key, blob, name, how, index, progress)
        except WorkerLoadError:
            self.failed = True
            return None
        except BrokenExecutor:  # a worker died (now or before): only the user's code runs there but ours
            self.broken = True
            usercode.worker_died()
            raise UserCodeError(f"{name}: a --jobs worker process died while running your code on it (a "
                                "signal, a crash inside a C extension, the memory killer?); without --jobs "
                                "it runs in this process") from None

    def _gather(self, key: str, blob: bytes, name: str, how: tuple, index, progress):
        import numpy as np

        pieces = np.array_split(index, min(len(index), 4 * max(self.workers, 1)))
        futures = {self.executor.submit(run_piece, key, blob, name, how, piece): k
                   for k, piece in enumerate(pieces)}
        results: list = [None] * len(pieces)
        done = 0
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                done += len(pieces[futures[fut]])
                if progress is not None:
                    progress(done, len(index))
        finally:
            for fut in futures:
                fut.cancel()
        return tuple(np.concatenate([r[j] for r in results]) for j in range(7))


def run_piece(key: str, blob: bytes, name: str, how: tuple, index):
    """In a worker: estimate.estimate_all for the elements `index` of node `name`."""
    import numpy as np

    from . import usercode
    from .numeric.estimate import estimate_all
    from .numeric.methods import METHODS
    from .numeric.prober import Prober

    method, rel_step, loss, gaps, max_memory, cuts = how
    with usercode.session(), blas_single_thread(), np.errstate(all="ignore"):
        graph, values = _payload(key, blob)
        prober = Prober(graph, values, name)
        prober.cuts = cuts  # the cuts beyond it, as in the checking process (numeric/cuts.py)
        return estimate_all(prober, METHODS[method], np.asarray(index), rel_step, loss, gaps, max_memory)

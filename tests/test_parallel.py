"""A check beyond one process: `--jobs N`, `executor=` (a process pool, a Dask cluster), the user's
file loaded from the same source in every worker, BLAS held at one thread during a check."""
import json
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from typer.testing import CliRunner

import gradverify
from gradverify import parallel
from gradverify.cli import app

from conftest import ROOT

LAYERS = ROOT / "examples" / "cs231n" / "cs231n" / "layers.py"


def _net(tmp_path, layers=LAYERS) -> str:
    """A small net of the user's own affine and ReLU layers (cs231n's), as a config file: x, w1
    and the hidden nodes have 256 elements or more, so they go to the workers (prober.OFFLOAD_FROM)."""
    cfg = tmp_path / "net.yaml"
    cfg.write_text(
        "seed: 3\ninputs: {shape: [16, 20], init: normal}\nlabels: {classes: 3}\nregularization: 0.01\n"
        f"layers:\n  - {{op: '{layers}:affine', activation: '{layers}:relu',\n"
        "     weights: {shape: [20, 16], init: normal, std: 0.5}, bias: {shape: [16], init: normal}}\n"
        f"  - {{op: '{layers}:affine', weights: {{shape: [16, 3], init: normal, std: 0.5}},\n"
        "     bias: {shape: [3], init: normal}}\n")
    return str(cfg)


def _numbers(report) -> dict:
    """Every node's verdict and numbers, for comparing two runs of the same check."""
    return {n.name: (n.status, n.method, n.numeric.tolist(), n.error.tolist(), n.statuses.tolist())
            for n in report.nodes}


class CountingPool(ProcessPoolExecutor):
    """A process pool that counts the tasks it was given."""

    tasks = 0

    def submit(self, *args, **kwargs):
        self.tasks += 1
        return super().submit(*args, **kwargs)


def test_a_process_pool_gives_the_serial_report(tmp_path):
    serial = gradverify.check(_net(tmp_path))
    with CountingPool(2) as pool:
        pooled = gradverify.check(_net(tmp_path), executor=pool)
    assert serial.status == "pass" and _numbers(pooled) == _numbers(serial)
    assert pool.tasks >= 8  # x, w1 and the hidden nodes went to the workers, 4 pieces per worker each


def test_jobs_on_the_command_line_gives_the_same_json(tmp_path):
    runs = [CliRunner().invoke(app, ["check", _net(tmp_path), "-f", "json", "--jobs", j]) for j in ("1", "2")]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].output
    one, two = (json.loads(r.stdout) for r in runs)
    assert [n["elements"] for n in one["nodes"]] == [n["elements"] for n in two["nodes"]]


def test_jobs_below_one_is_refused(tmp_path):
    res = CliRunner().invoke(app, ["check", _net(tmp_path), "--jobs", "0"])
    assert res.exit_code == 2 and "--jobs" in res.output


def test_a_bug_found_in_workers_is_still_a_fail(tmp_path):
    """A backward wrong by a factor of 2 on dw: the pieces computed in the workers still say so."""
    text = LAYERS.read_text().replace("dw = x_rows.T @ dout", "dw = 2 * x_rows.T @ dout")
    (tmp_path / "buggy.py").write_text(text)
    with ProcessPoolExecutor(2) as pool:
        rep = gradverify.check(_net(tmp_path, tmp_path / "buggy.py"), executor=pool)
    assert rep.exit_code == 1 and {"w1", "w2"} <= {n.name for n in rep.nodes if n.status == "fail"}


_IN_WORKER = ("import os\nimport numpy as np\n"  # the checking process loads it first; workers inherit its pid
              "_MAIN = int(os.environ.setdefault('GRADVERIFY_TEST_MAIN_PID', str(os.getpid())))\n"
              "def relu_forward(x):\n    if os.getpid() != _MAIN:\n        {act}\n"
              "    return np.maximum(x, 0), x\n"
              "def relu_backward(dout, x):\n    return dout * (x > 0)\n")


@pytest.mark.parametrize("act, said", [
    ("raise ValueError('in a worker')", "relu_forward raised ValueError: in a worker"),
    ("os._exit(0)", "relu_forward called os._exit(0)"),
    ("os.kill(os.getpid(), 9)", "a --jobs worker process died while running your code on it")])
def test_your_code_failing_only_in_a_worker_is_one_line_naming_it(tmp_path, act, said):
    """Your op raising, calling os._exit or being killed in a --jobs worker only: it was "internal
    error: RecursionError" (the op retried itself without end) or "BrokenProcessPool"."""
    import subprocess
    import sys

    (tmp_path / "mine.py").write_text(LAYERS.read_text() + "\n" + _IN_WORKER.format(act=act))  # its relu, redefined
    cfg = _net(tmp_path, tmp_path / "mine.py")
    done = subprocess.run([sys.executable, "-m", "gradverify", "check", cfg, "--jobs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gradverify: error: ") and said in done.stderr, done.stderr


def test_your_op_failing_from_its_sixth_call_on_is_one_line_naming_it(tmp_path):
    """A forward that raises only after a few calls, in this process: "internal error:
    RecursionError" (the op retried itself without end); now your op's error, exit 2."""
    (tmp_path / "mine.py").write_text(LAYERS.read_text() + "\n" +
        "import numpy as np\n_calls = [0]\ndef relu_forward(x):\n    _calls[0] += 1\n"
        "    if _calls[0] > 5:\n        raise ValueError('late failure')\n    return np.maximum(x, 0), x\n"
        "def relu_backward(dout, x):\n    return dout * (x > 0)\n")
    res = CliRunner().invoke(app, ["check", _net(tmp_path, tmp_path / "mine.py")])
    assert res.exit_code == 2 and "relu_forward raised ValueError: late failure" in res.stderr, res.output


def test_workers_compile_the_source_the_check_loaded(tmp_path):
    """The op's file is edited after the check loaded it: the pickled op still runs the old code."""
    src = tmp_path / "mine.py"
    src.write_text("def double_forward(x):\n    return 2 * x, None\n"
                   "def double_backward(d, cache):\n    return 2 * d\n")
    from gradverify import custom, usercode

    with usercode.session():
        op = custom.layer("mine.py:double", tmp_path, 0, "n", ("x",), {})
        blob = pickle.dumps(op)
    src.write_text("def double_forward(x):\n    return 3 * x, None\n")
    again = pickle.loads(blob)
    assert again.forward(np.ones((1, 2)))[0].tolist() == [2.0, 2.0]


def test_a_lambda_runs_in_this_process():
    """check_op with a lambda: it cannot be pickled for a worker, so the check runs here."""
    x = np.random.default_rng(0).normal(size=(16, 20))
    with ProcessPoolExecutor(2) as pool:
        rep = gradverify.check_op(lambda x: (np.tanh(x), x), lambda d, x: d * (1 - np.tanh(x) ** 2), x,
                                  executor=pool)
    assert rep.ok and rep.nodes[0].status == "pass"


def test_blas_runs_single_threaded_during_a_check_and_is_restored(monkeypatch):
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # (importing the CLI sets them)
        monkeypatch.delenv(var, raising=False)
    controls = parallel._thread_controls()
    if not controls:
        pytest.skip("numpy's BLAS is not OpenBLAS")
    get, put = controls[0]
    put(2)
    with parallel.blas_single_thread():
        assert get() == 1
    assert get() == 2


def test_a_dask_cluster_gives_the_serial_report(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = gradverify.check(_net(tmp_path))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        clustered = gradverify.check(_net(tmp_path), executor=client.get_executor())
    assert _numbers(clustered) == _numbers(serial)
    assert _strip_seconds(clustered) == _strip_seconds(serial)


def _strip_seconds(report) -> list:
    return [{k: v for k, v in n.items() if k != "seconds"} for n in report.to_dict()["nodes"]]


def test_a_file_whose_top_level_works_once_runs_here(tmp_path):
    """Its top level refuses to run twice (in a worker, after the main process): the nodes it
    affects are estimated in this process instead, with the same numbers."""
    marker = tmp_path / "loaded"
    src = LAYERS.read_text()
    (tmp_path / "once.py").write_text(f"import pathlib\n_m = pathlib.Path({str(marker)!r})\n"
                                      "assert not _m.exists(), 'loaded twice'\n_m.write_text('1')\n" + src)
    serial = gradverify.check(_net(tmp_path, LAYERS))
    with ProcessPoolExecutor(2) as pool:
        rep = gradverify.check(_net(tmp_path, tmp_path / "once.py"), executor=pool)
    assert rep.exit_code == 0 and _numbers(rep) == _numbers(serial)


def test_workers_see_a_user_op_whose_shortcuts_a_recheck_turned_off(tmp_path):
    """The checker turns a user op's shortcuts off when a recheck of failing elements without
    them disagrees (checker.nodes._recheck_shortcuts); the node is then estimated again, on the
    workers for a large node: the graph must travel again, with the op's shortcuts off."""
    from gradverify import checker, config
    run = checker.prepare(config.load(_net(tmp_path)))
    offload = parallel.Offload(None, 1)
    key, _ = offload.payload(run.graph, run.values)
    assert offload.payload(run.graph, run.values)[0] == key  # pickled once while nothing changes
    name = next(n for n, node in run.graph.nodes.items() if node.op is not None and node.op.shortcuts)
    run.graph.nodes[name].op.shortcuts = False
    again, blob = offload.payload(run.graph, run.values)
    graph, _ = pickle.loads(blob)
    assert again != key and graph.nodes[name].op.shortcuts is False

"""The CLI through typer's CliRunner: output, JSON, exit codes."""
import json

import pytest
from typer.testing import CliRunner

from gradverify.cli import app

from conftest import CONFIGS

SEED = str(CONFIGS / "seed.yaml")


@pytest.fixture
def runner():
    return CliRunner()


def test_check_table(runner):
    res = runner.invoke(app, ["check", SEED])
    assert res.exit_code == 0, res.output
    for name in ("l1_relu", "divexps", "loss_reg"):
        assert name in res.stdout
    assert "13 pass, 5 kink, 0 fail" in res.stdout
    assert "1.6433835063990552" in res.stdout
    assert "Traceback" not in res.output


def test_check_json(runner):
    res = runner.invoke(app, ["check", SEED, "--format", "json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert set(doc) >= {"status", "exit_code", "loss", "settings", "nodes", "blame", "summary"}
    assert doc["status"] == "kink" and doc["exit_code"] == 0 and doc["blame"] == []
    w1 = next(n for n in doc["nodes"] if n["name"] == "w1")
    assert set(w1) >= {"name", "kind", "op", "shape", "status", "max_abs_error", "max_rel_error",
                       "worst_index", "elements"}
    assert w1["status"] == "kink" and w1["shape"] == [1, 3] and w1["worst_index"] == [0, 0]
    (el,) = w1["elements"]  # only the non-passing ones
    assert set(el) >= {"index", "value", "analytic", "numeric", "left", "right", "abs_error",
                       "rel_error", "status"}
    assert el["index"] == [0, 0] and el["left"] == pytest.approx(0.05, abs=1e-9)


def test_strict(runner):
    assert runner.invoke(app, ["check", SEED, "--strict"]).exit_code == 1


def test_node_command(runner):
    res = runner.invoke(app, ["node", "l1_relu", "--config", SEED, "--format", "json"])
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["name"] == "l1_relu" and doc["shape"] == [2, 3] and len(doc["elements"]) == 6
    e12 = next(e for e in doc["elements"] if e["index"] == [1, 2])
    assert e12["numeric"] == pytest.approx(0.2756649569, abs=1e-10)
    res = runner.invoke(app, ["node", "w1", "--config", SEED, "--index", "0,0"])
    assert res.exit_code == 0 and "0.6971" in res.stdout and "KINK" in res.stdout


def test_node_default_config_is_bundled(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["node", "l1_relu"])
    assert res.exit_code == 0
    assert "bundled notebook network" in res.stderr
    assert "0.275664956904" in res.stdout


def test_unknown_node_exit_2(runner):
    res = runner.invoke(app, ["node", "l1_rel", "--config", SEED])
    assert res.exit_code == 2
    assert "did you mean 'l1_relu'" in res.stderr and "Traceback" not in res.output
    assert res.stdout == ""


def test_bad_config_exit_2(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "seed.yaml").read_text().replace("relu", "rleu"))
    res = runner.invoke(app, ["check", str(bad)])
    assert res.exit_code == 2
    assert "layers[0].activation" in res.stderr and "bad.yaml:" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_config_exit_2(runner, tmp_path):
    res = runner.invoke(app, ["check", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "no such config file" in res.stderr


def test_usage_error_exit_2(runner):
    assert runner.invoke(app, ["check", SEED, "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2


def test_version(runner):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("gradverify ")


def test_ctrl_c_exits_130(tmp_path):
    """SIGINT during a long check: one line on stderr, exit 130, no traceback. The check's custom
    activation creates a file when it first runs (the check has started) and then runs slowly,
    so the signal lands mid-check without guessing a delay."""
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / "started"
    (tmp_path / "slow.py").write_text(
        "import pathlib, time\nimport numpy as np\n"
        f"READY = pathlib.Path({str(ready)!r})\n"
        "def slow_forward(x):\n    READY.touch()\n    time.sleep(0.01)\n    return np.tanh(x), x\n"
        "def slow_backward(dout, x):\n    return dout * (1 - np.tanh(x) ** 2)\n")
    cfg = tmp_path / "big.yaml"
    cfg.write_text("inputs: {shape: [16, 32], init: normal, std: 1.0}\nlabels: {classes: 10}\n"
                   "layers:\n  - {weights: {shape: [32, 64], std: 0.05}, bias: {shape: [64]},"
                   " activation: slow.py:slow}\n"
                   "  - {weights: {shape: [64, 10], std: 0.05}, bias: {shape: [10]}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "gradverify", "check", str(cfg), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists() and proc.poll() is None, "the check did not start, or finished at once"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip() == "gradverify: interrupted"
    assert "Traceback" not in err


def test_forward_overflow_names_the_node(runner):
    res = runner.invoke(app, ["check", str(CONFIGS.parent / "tests" / "corpus" / "overflow_logits.yaml")])
    assert res.exit_code == 2
    assert "made Inf at node exps" in res.stderr and "stable: true" in res.stderr
    assert "overflow_logits.yaml:4:1: loss:" in res.stderr


def test_large_check_is_announced(runner, tmp_path, monkeypatch):
    import gradverify.checker.engine as engine
    monkeypatch.setattr(engine, "LARGE_CHECK", 10)
    res = runner.invoke(app, ["check", SEED])
    assert "it may take a while" in res.stderr and "--sample" in res.stderr


def test_sweep_command(runner):
    res = runner.invoke(app, ["sweep", "w1", "--config", SEED, "--index", "0,0"])
    assert res.exit_code == 0, res.output
    assert "log10(step)" in res.stdout and "^ the step gradverify uses" in res.stdout
    doc = json.loads(runner.invoke(app, ["sweep", "w2", "-c", SEED, "--format", "json"]).stdout)
    assert doc["kink"] is False and len(doc["steps"]) == 14
    assert min(doc["errors"]["complex"]) < 1e-15 and min(doc["errors"]["forward"]) > 1e-10
    kink = json.loads(runner.invoke(app, ["sweep", "w1", "-c", SEED, "-i", "0,0", "-f", "json"]).stdout)
    assert kink["kink"] is True and "left" in kink["errors"] and "right" in kink["errors"]


def test_sample_covers_every_node_and_says_so(runner):
    medium = str(CONFIGS / "bench_medium.yaml")
    res = runner.invoke(app, ["check", medium, "--sample", "7", "--format", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["settings"]["mode"] == "sampled"
    for n in doc["nodes"]:
        assert n["size"] == min(7, n["total"]) and n["mode"] == ("sampled" if n["total"] > 7 else "full")
    again = json.loads(runner.invoke(app, ["check", medium, "--sample", "7", "--format", "json"]).stdout)
    assert again == doc  # seeded: the same elements every time
    table = runner.invoke(app, ["check", medium, "--sample", "7"]).stdout
    assert "(sampled, seed 0)" in table


def test_fast_mode(runner):
    res = runner.invoke(app, ["check", str(CONFIGS / "bench_medium.yaml"), "--fast", "--format", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0 and doc["settings"]["mode"] == "directional"
    assert all(n["mode"] == "directional" and n["directions"] >= 3 for n in doc["nodes"])


def test_split_flag(runner):
    doc = json.loads(runner.invoke(app, ["check", SEED, "--split", "--format", "json"]).stdout)
    parts = [(n["name"], n["of"]) for n in doc["nodes"] if n["of"] != "loss"]
    assert parts == [(p, part) for part in ("loss_data", "loss_reg") for p in ("w1", "b1", "w2", "b2")]


def test_no_progress_bar_when_not_a_terminal(runner):
    res = runner.invoke(app, ["check", str(CONFIGS / "bench_medium.yaml"), "--sample", "50"])
    assert "checking" not in res.stderr


def test_python_m_without_dependencies_is_one_line(tmp_path):
    """From a checkout with a Python that lacks typer: one line, exit 2, no traceback."""
    import subprocess
    import sys

    blocker = tmp_path / "typer.py"
    blocker.write_text("raise ImportError('No module named typer')\n")
    env = {"PYTHONPATH": f"{tmp_path}:{CONFIGS.parent}", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "gradverify", "--version"], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("gradverify: error: ") and "pip install ." in res.stderr

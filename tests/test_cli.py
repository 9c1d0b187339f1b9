"""The CLI through typer's CliRunner: output, JSON, exit codes."""
import json
from pathlib import Path

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
    """Interactively (a terminal, no CI), no config means the demo network, announced."""
    import gradverify.cli.common as cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(cli, "_stdout_is_terminal", lambda: True)
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


# ---- no config: the demo only when a person is watching ---------------------------------------

@pytest.mark.parametrize("args,env", [
    (["check", "--format", "github"], {}), (["check", "--format", "json"], {}), (["check", "-q"], {}),
    (["check", "--junit", "j.xml"], {}), (["check"], {}), (["node", "w1"], {}), (["graph", "--dot"], {}),
])
def test_no_config_without_a_terminal_is_exit_2(runner, tmp_path, monkeypatch, args, env):
    """In a CI job without a config, gradverify checked the bundled demo and passed (exit 0)."""
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, args, env=env)
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and not (tmp_path / "j.xml").exists()
    (line,) = res.stderr.strip().splitlines()
    assert "no config given, and no ./gradverify.yaml or ./gradverify.yml in" in line
    assert "gradverify init" in line


@pytest.fixture
def terminal(monkeypatch):
    """stdout is a terminal (CliRunner's is not), and no CI."""
    import gradverify.cli.common as cli

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(cli, "_stdout_is_terminal", lambda: True)


def test_no_config_in_a_terminal_is_the_demo_announced_even_quiet(runner, tmp_path, monkeypatch, terminal):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["check", "-q"])
    assert res.exit_code == 0 and "13 pass, 5 kink" in res.stdout
    assert "using the bundled notebook network" in res.stderr


@pytest.mark.parametrize("args", [["check", "--format", "json"], ["check", "--junit", "j.xml"], ["check"]])
def test_no_config_in_a_terminal_but_machine_output_or_ci_is_exit_2(runner, tmp_path, monkeypatch, terminal, args):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, args).exit_code == (0 if args == ["check"] else 2)
    assert runner.invoke(app, args, env={"CI": "true"}).exit_code == 2


def test_gradverify_yml_is_found(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gradverify.yml").write_text((CONFIGS / "smooth.yaml").read_text())
    res = runner.invoke(app, ["check", "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["settings"]["config"] == "gradverify.yml"


def test_default_config_that_is_a_dangling_link_or_a_directory_is_exit_2(runner, tmp_path, monkeypatch, terminal):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gradverify.yaml").symlink_to(tmp_path / "gone.yaml")
    res = runner.invoke(app, ["check"])
    assert res.exit_code == 2 and "./gradverify.yaml is a symbolic link to" in res.stderr
    (tmp_path / "gradverify.yaml").unlink()
    (tmp_path / "gradverify.yaml").mkdir()
    res = runner.invoke(app, ["check"])
    assert res.exit_code == 2 and "gradverify.yaml: is a directory" in res.stderr


# ---- options out of range are usage errors, before anything runs -----------------------------

@pytest.mark.parametrize("args,said", [
    (["--rtol", "-1"], "--rtol -1: expected a finite number ≥ 0"),
    (["--rtol", "nan"], "--rtol nan: expected a finite number ≥ 0"),
    (["--atol", "inf"], "--atol inf: expected a finite number ≥ 0"),
    (["--step", "0"], "--step 0: expected a finite number > 0"),
    (["--step", "nan"], "--step nan: expected a finite number > 0"),
    (["--step", "inf"], "--step inf: expected a finite number > 0"),
    (["--step", "-1e-6"], "--step -1e-06: expected a finite number > 0"),
    (["--seed", "-1", "--sample", "3"], "--seed -1: expected an integer ≥ 0"),
    (["--max-memory", "nan"], "--max-memory nan: expected a finite number > 0"),
    (["--max-memory", "0"], "--max-memory 0: expected a finite number > 0"),
    (["--max-elements", "0"], "--max-elements 0: expected an integer ≥ 1"),
    (["--sample", "0"], "--sample 0: expected an integer ≥ 1"),
])
def test_bad_option_is_a_usage_error_and_nothing_runs(runner, tmp_path, args, said):
    marker = tmp_path / "ran"
    (tmp_path / "mine.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                      "def t_forward(x):\n    return x, x\ndef t_backward(d, c):\n    return d\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text((CONFIGS / "seed.yaml").read_text().replace("activation: relu", "activation: mine.py:t"))
    res = runner.invoke(app, ["check", str(cfg)] + args)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip() == f"gradverify: error: {said}"
    assert not marker.exists()


@pytest.mark.parametrize("args,said", [(["--limit", "-1"], "--limit -1: expected an integer ≥ 0"),
                                       (["--rtol", "-1"], "--rtol -1: expected a finite number ≥ 0"),
                                       (["--max-elements", "0"], "--max-elements 0: expected an integer ≥ 1")])
def test_node_bad_option_is_a_usage_error(runner, args, said):
    res = runner.invoke(app, ["node", "w1", "--config", SEED] + args)
    assert res.exit_code == 2 and res.stderr.strip() == f"gradverify: error: {said}"


# ---- stdout belongs to the report ------------------------------------------------------------

NOISY = ("import os, sys\nimport numpy as np\nprint('import says hi')\nos.write(1, b'import fd write\\n')\n"
         "def t_forward(x):\n    print('forward says hi')\n    os.write(1, b'forward fd write\\n')\n"
         "    sys.stdout = open(os.devnull, 'w') if False else sys.stdout\n    return np.tanh(x), x\n"
         "def t_backward(d, c):\n    print('backward says hi')\n    sys.stdout = sys.stderr\n"
         "    return d * (1 - np.tanh(c) ** 2)\n")


def _noisy_net(tmp_path):
    (tmp_path / "mine.py").write_text(NOISY)
    cfg = tmp_path / "net.yaml"
    cfg.write_text("inputs: [[1.0, -2.0]]\nlabels: [0]\nlayers:\n"
                   "  - {weights: [[0.3, 0.1], [0.25, -0.4]], bias: [0.1, 0.2], activation: mine.py:t}\n")
    return cfg


@pytest.mark.parametrize("fmt", ["json", "github", "markdown", "table"])
def test_user_output_goes_to_stderr_in_a_real_process(tmp_path, fmt):
    """print() and os.write(1, …) in user code used to land in the middle of the JSON."""
    import subprocess
    import sys

    cfg = _noisy_net(tmp_path)
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", str(cfg), "--format", fmt],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for said in ("import says hi", "import fd write", "forward says hi", "forward fd write", "backward says hi"):
        assert said not in res.stdout and said in res.stderr
    if fmt == "json":
        assert json.loads(res.stdout)["status"] == "pass"
    elif fmt == "github":
        assert res.stdout == "gradverify: 14 nodes: 14 pass, 0 kink, 0 fail: PASS\n"


def test_user_output_goes_to_stderr_under_clirunner(runner, tmp_path):
    res = runner.invoke(app, ["check", str(_noisy_net(tmp_path)), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "pass"
    assert "forward says hi" in res.stderr
    import sys
    assert sys.stdout is not sys.stderr  # restored after the check


# ---- output that survives: encodings, COLUMNS, report files ----------------------------------

ZOO_BUG = str(CONFIGS.parent / "examples" / "zoo" / "softmax_rowsum.yaml")


@pytest.mark.parametrize("env", [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0",
                                                                  "PYTHONCOERCECLOCALE": "0"}])
@pytest.mark.parametrize("fmt", ["table", "markdown", "github"])
def test_ascii_stdout_keeps_the_verdict(tmp_path, env, fmt):
    """A non-UTF-8 stdout was `internal error: UnicodeEncodeError`, exit 2, even for a failing
    network."""
    import os
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LC_ALL", "LANG", "PYTHONUTF8")}
    res = subprocess.run([sys.executable, "-m", "gradverify", "check", ZOO_BUG, "--format", fmt],
                         capture_output=True, env={**full, **env})
    assert res.returncode == 1, res.stderr
    res.stdout.decode("ascii")  # nothing but ASCII
    assert b"l2_softmax" in res.stdout and b"internal error" not in res.stderr
    if fmt == "table":
        assert b"| l2_lin " in res.stdout and b" 4x3 " in res.stdout


@pytest.mark.parametrize("columns", ["0", "-5", "abc", ""])
def test_bad_columns_is_unset(runner, columns):
    """COLUMNS=0 printed nothing at all."""
    res = runner.invoke(app, ["check", SEED], env={"COLUMNS": columns})
    assert res.exit_code == 0 and "13 pass, 5 kink, 0 fail" in res.stdout and "l1_relu" in res.stdout


@pytest.mark.parametrize("flag", ["--junit", "--svg", "--html"])
def test_unwritable_report_file_is_exit_2_before_the_run(runner, tmp_path, flag):
    marker = tmp_path / "ran"
    (tmp_path / "mine.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                                      "def t_forward(x):\n    return x, x\ndef t_backward(d, c):\n    return d\n")
    cfg = tmp_path / "net.yaml"
    cfg.write_text((CONFIGS / "seed.yaml").read_text().replace("activation: relu", "activation: mine.py:t"))
    for target, said in ((tmp_path / "no" / "such" / "r.xml", "no such directory"), (tmp_path, "it is a directory")):
        res = runner.invoke(app, ["check", str(cfg), "--format", "json", flag, str(target)])
        assert res.exit_code == 2 and res.stdout == "" and not marker.exists()
        assert res.stderr.startswith("gradverify: error: cannot write the ") and said in res.stderr


def test_report_file_that_fails_after_the_run_keeps_the_verdict(runner, tmp_path):
    """The folder disappears while the check runs: stdout has the report, one line on stderr, and
    the exit code is the check's (it used to be 2, with no JSON)."""
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "buggy.py").write_text(f"import shutil\nshutil.rmtree({str(out)!r})\n" +
                                       (CONFIGS.parent / "examples" / "zoo" / "buggy.py").read_text())
    cfg = tmp_path / "net.yaml"
    cfg.write_text(Path(ZOO_BUG).read_text())
    res = runner.invoke(app, ["check", str(cfg), "--format", "json", "--junit", str(out / "j.xml")])
    assert res.exit_code == 1
    assert json.loads(res.stdout)["status"] == "fail"
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"gradverify: error: cannot write the JUnit report to {out / 'j.xml'}: ")


def test_user_chdir_does_not_move_report_files(runner, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.py").write_text(f"import os\nos.chdir({str(elsewhere)!r})\n"
                                  "import numpy as np\ndef t_forward(x):\n    return np.tanh(x), x\n"
                                  "def t_backward(d, c):\n    return d * (1 - np.tanh(c) ** 2)\n")
    (work / "loss.py").write_text("def half_sq(x, y):\n    return 0.5 * float((x ** 2).sum()), x\n")
    (work / "net.yaml").write_text("inputs: [[1.0, -2.0]]\nlabels: [0]\nlayers:\n"
                                   "  - {weights: [[0.3, 0.1], [0.25, -0.4]], bias: [0.1, 0.2], activation: mine.py:t}\n"
                                   "loss: loss.py:half_sq\n")  # found beside the config after mine.py chdirs
    monkeypatch.chdir(work)
    res = runner.invoke(app, ["check", "net.yaml", "-q", "--junit", "j.xml", "--svg", "t.svg"])
    assert res.exit_code == 0, res.output
    assert (work / "j.xml").is_file() and (work / "t.svg").is_file()
    assert not list(elsewhere.iterdir())
    assert Path.cwd() == work  # and the working directory is restored


@pytest.mark.parametrize("fmt", ["json", "github", "markdown"])
def test_svg_and_html_hold_the_table_whatever_the_format(runner, tmp_path, fmt):
    """With --format json or github they used to be empty."""
    svg, html = tmp_path / "r.svg", tmp_path / "r.html"
    res = runner.invoke(app, ["check", ZOO_BUG, "--format", fmt, "--svg", str(svg), "--html", str(html)])
    assert res.exit_code == 1
    for f in (svg, html):
        text = f.read_text()
        assert "l2_softmax" in text and "gradverify" in text and "max" in text and "FAIL" in text



BAD = CONFIGS.parent / "docs" / "examples" / "bad.yaml"


def test_one_bad_config_is_an_error_in_every_machine_output(runner, tmp_path):
    """A config that is bad input, alone: a JSON error object, an ::error annotation at its line,
    an errored JUnit case — and still one line on stderr, exit 2."""
    res = runner.invoke(app, ["check", str(BAD), "-f", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 2 and doc["status"] == "error" and doc["line"] == 9 and doc["column"] == 5
    assert doc["file"].endswith("bad.yaml") and "layers[1].weights" in doc["message"]
    res = runner.invoke(app, ["check", str(BAD), "-f", "github"])
    assert res.exit_code == 2 and res.stdout.startswith(f"::error file={BAD},line=9,")
    res = runner.invoke(app, ["check", str(BAD), "--junit", str(tmp_path / "j.xml")])
    assert res.exit_code == 2 and 'errors="1"' in (tmp_path / "j.xml").read_text()
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("gradverify: error: ")


def test_a_report_file_never_replaces_a_config(runner, tmp_path):
    cfg = tmp_path / "net.yaml"
    cfg.write_text((CONFIGS / "seed.yaml").read_text())
    res = runner.invoke(app, ["check", str(cfg), "--json", str(cfg)])
    assert res.exit_code == 2 and "a config being checked" in res.stderr
    assert cfg.read_text() == (CONFIGS / "seed.yaml").read_text()


def test_github_budget_holds_across_several_configs(runner):
    """GitHub shows 10 error annotations per step: with every zoo bug in one run, still ≤ 10
    `::error` lines, the blamed ops first."""
    res = runner.invoke(app, ["check", str(CONFIGS.parent / "examples" / "zoo"), "-f", "github"])
    errors = [line for line in res.stdout.split("\n") if line.startswith("::error")]
    assert res.exit_code == 1 and len(errors) == 10
    assert all("the backward of" in line for line in errors[:9])


def test_folder_search_skips_hidden_folders_and_virtual_environments(runner, tmp_path):
    for folder in (".git", "venv", "nets"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "net.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    res = runner.invoke(app, ["check", str(tmp_path), "-f", "json"])
    doc = json.loads(res.stdout)  # one report, not several runs: nets/ only
    assert res.exit_code == 0 and "runs" not in doc and len(doc["nodes"]) == 18


def test_taylor_method_keeps_its_order_column_at_80_columns(runner):
    res = runner.invoke(app, ["check", str(CONFIGS / "smooth.yaml"), "--method", "taylor"], env={"COLUMNS": "80"})
    assert res.exit_code == 0 and "order" in res.stdout and "2.00 pass" in res.stdout

def test_start_up_pauses_the_garbage_collector_only_until_the_command_starts(tmp_path):
    """The console script (`run()`, here its `invoke()` without the exit) turns the cyclic
    collector off through imports and parsing; the command turns it back on before doing
    anything, so the check itself runs with it on."""
    import subprocess
    import sys

    script = ("import gc, sys\n"
              "from gradverify.cli import common, invoke\n"
              "assert gc.isenabled(), 'importing the CLI must leave the collector on'\n"
              "seen = []\n"
              "resume = common.resume_gc\n"
              "def spy():\n"
              "    seen.append(gc.isenabled()); resume(); seen.append(gc.isenabled())\n"
              "common.resume_gc = spy\n"
              f"sys.argv = ['gradverify', 'init', {str(tmp_path / 'g.yaml')!r}]\n"
              "code = invoke()\n"
              "assert not code, code\n"
              "print(seen, gc.isenabled())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, True] True"
    assert (tmp_path / "g.yaml").exists()


def _buffered() -> dict:
    """The environment with Python's streams buffered as a user's are (no PYTHONUNBUFFERED)."""
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def _ends(how: str, code, closed: bool = False):
    """A process that writes to stdout and stderr (buffered, as a user's are), then ends with
    `how` ("sys.exit" or gradverify's "exit_now") of `code`, its stdout's reader gone if
    `closed`: (status, stdout, stderr)."""
    import subprocess
    import sys

    script = ("import sys, time\nfrom gradverify.cli import exit_now\n"
              f"time.sleep({1 if closed else 0})\n"
              "sys.stdout.write('report ' * 100)\nsys.stderr.write('note ')\n"
              f"{'sys.exit' if how == 'sys.exit' else 'exit_now'}({code!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_buffered())
    assert proc.stdout is not None and proc.stderr is not None
    if closed:
        proc.stdout.close()
        return proc.wait(timeout=120), "", proc.stderr.read().decode()
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("code", [None, 0, 1, 2, 120, 130, 255, 256, 257, -1, 2**31, 2**63, True, "bye", 3.5])
def test_the_console_script_ends_as_sys_exit_would(code):
    """`exit_now` skips the interpreter's teardown: the status, stdout and stderr are those of
    Python's own sys.exit (the reference, run the same way), flushed, for every kind of code."""
    assert _ends("exit_now", code) == _ends("sys.exit", code)


@pytest.mark.parametrize("code", [0, 1, 2])
def test_the_console_script_says_120_whatever_the_verdict_when_its_reader_left(code):
    """stdout that cannot be flushed at the end (`gradverify check | head -c 1`, the report
    still buffered): Python's own 120, for a verdict of 1 or 2 too — never a silent 0."""
    status, _, err = _ends("exit_now", code, closed=True)
    assert status == _ends("sys.exit", code, closed=True)[0] == 120
    assert "Traceback" not in err


def test_closed_stdout_or_stderr_descriptors_end_as_without_them():
    """`gradverify --version >&-` (Python makes sys.stdout None): 0, no traceback; the same
    with stderr closed; a check with either closed keeps its verdict (stdout closed was an
    internal error, exit 2; stderr closed too)."""
    import subprocess
    import sys

    run = f"{sys.executable} -m gradverify"
    for cmd, status in ((f"{run} --version >&-", 0), (f"{run} --version 2>&-", 0), (f"{run} schema >&-", 0),
                        (f"{run} check {CONFIGS / 'seed.yaml'} >/dev/null 2>&-", 0),
                        (f"{run} check {ZOO_BUG} >/dev/null 2>&-", 1),
                        (f"{run} check {CONFIGS / 'seed.yaml'} >&-", 0), (f"{run} check {ZOO_BUG} >&-", 1),
                        (f"{run} node x --config {CONFIGS / 'seed.yaml'} >&-", 0)):
        done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120, env=_buffered())
        assert (done.returncode, "Traceback" in done.stderr) == (status, False), cmd


def _without_a_reader(args: list, gone: str, cwd=None, stdout_file=None):
    """`gradverify *args` with the reader of `gone` ("stdout" or "stderr") gone before it
    writes: (status, what the other stream got)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "gradverify", *args], cwd=cwd, env=_buffered(),
                            stdout=stdout_file or subprocess.PIPE, stderr=subprocess.PIPE)
    closing, other = (proc.stdout, proc.stderr) if gone == "stdout" else (proc.stderr, proc.stdout)
    assert closing is not None
    closing.close()
    kept = other.read().decode() if other is not None else ""
    return proc.wait(timeout=120), kept


def test_an_error_line_nobody_reads_keeps_its_exit_code(tmp_path):
    """Bad input with stderr's reader gone: still 2 (the error line is lost, not the verdict;
    it used to be 1, the mismatch code); its JSON error object on a stdout nobody reads: 120."""
    missing = str(tmp_path / "missing.yaml")
    assert _without_a_reader(["check", missing], "stderr")[0] == 2
    assert _without_a_reader(["check", missing, "--format", "json"], "stdout")[0] == 120


def test_the_report_files_are_written_when_stdouts_reader_left(tmp_path):
    """`gradverify check … --junit r.xml --json r.json | head -c 1`: 120, and both files
    whole (they were written after the table, which raised: neither was)."""
    junit, report = tmp_path / "r.xml", tmp_path / "r.json"
    status, _ = _without_a_reader(["check", str(CONFIGS / "seed.yaml"), "--junit", str(junit), "--json",
                                   str(report)], "stdout")
    assert status == 120
    assert json.loads(report.read_text())["summary"]["elements"] == 59
    assert junit.read_text().rstrip().endswith("</testsuites>")


def _onto_full_disk(args: list, stream: str, cwd=None):
    """`gradverify *args` with `stream` ("stdout" or "stderr") on /dev/full (every write
    refused: ENOSPC): (status, what the other stream got)."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, stream: full}
        done = subprocess.run([sys.executable, "-m", "gradverify", *args], cwd=cwd, env=_buffered(),
                              text=True, timeout=120, **pipes)
    return done.returncode, done.stderr if stream == "stdout" else done.stdout


_FULL_DISK = "gradverify: error: the report could not be written to stdout: No space left on device"
_SEED = str(CONFIGS / "seed.yaml")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["check", _SEED], ["check", _SEED, "--format", "json"],
                                  ["check", _SEED, "--format", "github"], ["check", _SEED, "--format", "markdown"],
                                  ["node", "x", "--config", _SEED], ["node", "x", "--config", _SEED, "--format", "json"],
                                  ["graph", _SEED], ["schema"], ["--version"], ["--help"], ["check", "--help"]])
def test_a_full_disk_under_stdout_is_said_and_is_120(args):
    """stdout that cannot take the report for another reason than a reader who left (ENOSPC):
    120 as Python gives, and one line saying why, whatever the command (it was an internal
    error, exit 2, for a report larger than the stream's buffer; a traceback for --help and
    --version)."""
    status, err = _onto_full_disk(args, "stdout")
    assert (status, err.strip().splitlines()) == (120, [_FULL_DISK])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args, status", [(["check", _SEED], 0), (["check", "missing.yaml"], 2),
                                          (["check", "--no-such-option"], 2),
                                          (["check", str(CONFIGS / "seed_custom_relu.yaml"), "--method", "central"], 0)])
def test_a_full_disk_under_stderr_changes_nothing_else(args, status, tmp_path):
    """Notes, error lines and usage errors that cannot be written are lost; the report arrives
    whole and the status is the verdict's (they were 120, or an internal error)."""
    got, out = _onto_full_disk(args, "stderr", cwd=tmp_path)
    assert got == status
    assert ("59 elements" in out) == (status == 0)


def test_your_code_printing_to_a_stderr_nobody_reads_keeps_the_verdict(tmp_path):
    """A print() of your op while user code's stdout goes to stderr, whose reader left: the
    print is lost, the check goes on (it was a BrokenPipeError inside your op: exit 2)."""
    (tmp_path / "chatty.py").write_text(
        "import numpy as np\n"
        "def relu_forward(x):\n    print('forward', x.shape, 'x' * 70000)\n    return np.maximum(x, 0), x\n"
        "def relu_backward(dout, x):\n    print('backward')\n    return dout * (x > 0)\n")
    config = (CONFIGS / "seed_custom_relu.yaml").read_text().replace("../examples/zoo/correct.py", "chatty.py")
    (tmp_path / "net.yaml").write_text(config)
    status, out = _without_a_reader(["check", "net.yaml"], "stderr", cwd=tmp_path)
    assert status == 0
    assert "59 elements: 13 pass, 5 kink, 0 fail" in out


@pytest.mark.parametrize("args", [["--version"], ["schema"], ["schema", "--report"]])
def test_what_needs_no_config_says_120_too_when_its_reader_left(args):
    """`gradverify --version | …` with the reader gone: 120 as every command (click said 1)."""
    assert _without_a_reader(args, "stdout") == (120, "")


def test_notes_nobody_reads_leave_the_report_whole(tmp_path):
    """stdout to a file, stderr's reader gone, a note to say (709,517 elements: "it may take a
    while"): the report arrives whole and the verdict stands (it used to be thrown away, 120)."""
    report = tmp_path / "report.txt"
    with report.open("wb") as out:
        status, _ = _without_a_reader(["check", str(CONFIGS / "bench_large.yaml")], "stderr", stdout_file=out)
    assert status == 0
    assert "18 nodes, 709517 elements: 18 pass" in report.read_text()


@pytest.mark.parametrize("fmt", ["table", "json", "github", "markdown"])
@pytest.mark.parametrize("buffered", [True, False])
def test_a_reader_who_left_gives_120_not_an_internal_error(fmt, buffered):
    """`gradverify check … | head`: stdout's reader is gone before the report is written. The
    command ends with 120 (the report did not arrive), saying nothing more: rich's own handling
    raised SystemExit(1) from inside the command, reported as an internal error, exit 2."""
    import os
    import subprocess
    import sys

    env = _buffered() if buffered else {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gradverify", "check", str(CONFIGS / "seed.yaml"), "--format",
                             fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    assert proc.wait(timeout=120) == 120
    assert proc.stderr.read() == b""


def test_a_command_leaves_the_garbage_collector_as_the_caller_set_it(runner, tmp_path):
    import gc

    gc.disable()
    try:
        assert runner.invoke(app, ["init", str(tmp_path / "g.yaml")]).exit_code == 0
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_command_keeps_freed_memory_unless_the_user_set_glibc_thresholds(monkeypatch):
    """`gradverify` (cli.run) sets glibc's mmap threshold to 32 MB and trim threshold to 256 MB
    before a check (bench/process.py: a third of a CNN check's process was page faults on
    memory mapped afresh); thresholds set in the environment win, and nothing is set then."""
    import ctypes

    from gradverify import cli
    calls: list = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(cli.sys, "platform", "linux")
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(var, raising=False)
    cli._keep_freed_memory()
    assert calls == [(-3, 32 * 2**20), (-1, 256 * 2**20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    calls.clear()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    cli._keep_freed_memory()
    assert calls == []


# --- typer's coercion without pydantic (gradverify/cli/coercion.py) --------------------------

def _parse_outcome(command, args):
    """What parsing `args` gives the command: its parameters' values with their types, or the
    error's class and message."""
    import typer

    try:
        ctx = command.make_context(command.name, list(args), resilient_parsing=False)
    except typer.Exit as done:
        return ("exit", done.exit_code)
    except Exception as error:  # noqa: BLE001 (the usage error is the outcome)
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        return (type(error).__name__, message)
    return {name: (type(value), repr(value)) for name, value in ctx.params.items()}  # nan == nan


def _option_values(command):
    """A value for every option of the command, plain and awkward: numbers, signs, text,
    choices in and out of case, paths that exist and do not, the empty string."""
    texts = ["1", "007", "-1", "+2", "1.5", "1e3", "x", "", "JSON", "json", "central", "status",
             "w*", str(CONFIGS / "seed.yaml"), "/no/such/file.yaml", "99999999999999999999",
             " 1", "1 ", " x.yaml ", "１", "-2.5e-3", ".5", "5.", "1e400", "1_000", "0x10", "nan",
             "-007", "a\x00b.yaml", "\ud800"]
    required = ["l1_relu" for p in command.params if p.param_type_name == "argument" and p.required]
    for param in command.params:
        if getattr(param, "is_flag", False) or param.param_type_name != "option":
            continue
        descriptor = getattr(param, "type_descriptor", None)  # typer >= 0.29; click's type before
        choices = getattr(descriptor, "choices", None) or getattr(getattr(param, "type", None),
                                                                   "choices", None) or []
        choices = [getattr(c, "value", c) for c in choices]
        for value in texts + [str(c) for c in choices]:
            yield [*required, param.opts[0], value]


@pytest.mark.parametrize("name", ["check", "node", "sweep", "graph", "init", "schema"])
def test_plain_coercion_parses_every_option_as_typer_does(name, tmp_path, monkeypatch):
    """Each command's options, given plain and awkward values, parse to the same values, types
    and errors with gradverify's plain coercion as with typer's own (pydantic's, typer 0.29):
    numbers, choices, text, paths that do not exist, cannot be read (typer's message names the
    text typed) or hold a NUL (typer's usage error, not a crash)."""
    import os

    import typer.main

    from gradverify.cli import coercion

    secret = tmp_path / "secret.yaml"
    secret.write_text("")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: Path(p) != secret and real_access(p, mode, *a, **k))
    monkeypatch.chdir(tmp_path)
    theirs = typer.main.get_command(app).commands[name]  # typer's own coercion
    group = typer.main.get_command(app)  # ours: as the app hands it out
    ours = group.get_command(group.context_class(group), name)
    if coercion.verified():  # the plain coercion is what runs
        assert any(isinstance(getattr(p, "_runtime_param", None), coercion.PlainCoercion)
                   for p in ours.get_params(ours.context_class(ours)))
    cases = [[], [str(CONFIGS / "seed.yaml")], ["l1_relu"], ["a.yaml", "b.yaml"], [""], ["./secret.yaml"],
             ["a\x00b.yaml"], ["l1_relu", "-c", "./secret.yaml"]]
    cases += list(_option_values(ours))
    cases += [[*args[:-1], "./secret.yaml"] for args in _option_values(ours) if args[-1] == "1"]
    compared = 0
    for args in cases:
        expected = _parse_outcome(theirs, args)
        assert _parse_outcome(ours, args) == expected, args
        compared += isinstance(expected, dict)
    assert compared >= 1  # values were parsed, not only refused


def test_a_check_imports_no_pydantic(tmp_path):
    """typer 0.29 coerces through pydantic (~70 ms of start-up): the plain coercion answers a
    check's options without it, numbers of every sign included. On a typer it was not compared
    with, typer's own coercion runs (skipped: widen VERIFIED_TYPER once the comparison above
    passes there)."""
    import subprocess
    import sys

    import typer

    from gradverify.cli import coercion

    if coercion.TyperParameter is not None and not coercion.verified():
        pytest.skip(f"typer {typer.__version__} is not in coercion.VERIFIED_TYPER")

    script = ("import sys\nfrom gradverify.cli import invoke\n"
              f"sys.argv = ['gradverify', 'check', {str(CONFIGS / 'seed.yaml')!r}, '--format', 'json',"
              " '--nodes', 'w*', '--seed', '+3', '--rtol', '1e-4', '--json', sys.argv[1]]\n"
              "code = invoke()\nprint(code, 'pydantic' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.stderr.splitlines()[-1] == "0 False", done.stderr
    assert json.loads(done.stdout)["exit_code"] == 0

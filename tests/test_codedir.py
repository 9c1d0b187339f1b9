"""--code-dir (and code_dir= in the API): one config, many students' code. Three student folders,
one with a bug (db a mean over the batch instead of a sum): one line per student, one JUnit suite
each, the exit code the worst; the buggy student's numbers checked by hand."""
import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

import gradverify
from gradverify.cli import app

from conftest import ROOT

CORRECT = ROOT / "examples" / "zoo" / "correct.py"
NET = """seed: 1
inputs: {shape: [4, 3], init: normal, std: 1.0}
labels: [0, 2, 1, 2]
layers:
  - op: layers.py:affine
    weights: {shape: [3, 5], init: normal, std: 0.8}
    bias: {shape: [5], init: normal, std: 0.3}
    activation: tanh
  - weights: {shape: [5, 3], init: normal, std: 0.8}
    bias: {shape: [3], init: normal, std: 0.3}
loss: softmax_cross_entropy
"""


@pytest.fixture
def course(tmp_path, monkeypatch):
    """course/net.yaml (no layers.py beside it) and students/{alice,bob,carol}/layers.py; bob's
    db is the batch mean."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_text(NET)
    code = CORRECT.read_text()
    for name in ("alice", "bob", "carol"):
        (tmp_path / "students" / name).mkdir(parents=True)
        text = code.replace("dout.sum(axis=0)\n", "dout.mean(axis=0)\n") if name == "bob" else code
        assert name != "bob" or text != code
        (tmp_path / "students" / name / "layers.py").write_text(text)
    return tmp_path


def test_one_line_per_student_and_worst_exit(course):
    res = CliRunner().invoke(app, ["check", "net.yaml", "--code-dir", "students/*/", "--junit", "j.xml"],
                             env={"COLUMNS": "300"})
    lines = res.stdout.strip().split("\n")
    assert res.exit_code == 1, res.stderr
    assert [line.split()[:2] for line in lines[:3]] == [["students/alice", "PASS"], ["students/bob", "FAIL"],
                                                       ["students/carol", "PASS"]]
    assert "blame: the backward of l1_affine (layers.py:affine) is wrong" in lines[1]
    assert lines[3] == "3 runs: 2 ok, 1 failed, 0 bad input · exit 1"
    suites = ET.parse(course / "j.xml").getroot().findall("testsuite")
    assert [(s.get("name"), s.get("failures")) for s in suites] == [
        ("gradverify.net.alice", "0"), ("gradverify.net.bob", "1"), ("gradverify.net.carol", "0")]


def test_shell_expanded_folders_arrive_as_arguments(course):
    """Unquoted, the shell turns `--code-dir students/*/` into one option and two arguments."""
    res = CliRunner().invoke(app, ["check", "net.yaml", "--code-dir", "students/alice/", "students/bob/",
                                   "students/carol/", "--format", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 1
    assert [(r["code_dir"], r["status"]) for r in doc["runs"]] == [
        ("students/alice", "pass"), ("students/bob", "fail"), ("students/carol", "pass")]


def test_missing_student_file_is_that_students_error(course):
    (course / "students" / "carol" / "layers.py").unlink()
    res = CliRunner().invoke(app, ["check", "net.yaml", "--code-dir", "students/*/"], env={"COLUMNS": "300"})
    assert res.exit_code == 2
    assert res.stdout.split("\n")[2].split()[:2] == ["students/carol", "ERROR"]
    assert "students/carol: " in res.stderr and "Traceback" not in res.stderr


def test_without_code_dir_the_config_folder_is_used(course):
    res = CliRunner().invoke(app, ["check", "net.yaml"])
    assert res.exit_code == 2 and "layers.py" in res.stderr
    shutil.copy(course / "students" / "alice" / "layers.py", course / "layers.py")
    assert CliRunner().invoke(app, ["check", "net.yaml", "-q"]).exit_code == 0


def test_api_code_dir(course):
    good = gradverify.check(course / "net.yaml", code_dir=course / "students" / "alice")
    bad = gradverify.check(course / "net.yaml", code_dir=course / "students" / "bob")
    assert good.ok and not bad.ok
    b1_good, b1_bad = good.node("b1"), bad.node("b1")
    assert [n.name for n in bad.nodes if n.status == "fail"] == ["b1"]
    # bob's db is the mean over the batch of 4: exactly a quarter of the correct sum
    np.testing.assert_allclose(b1_bad.analytic, b1_good.analytic / 4, rtol=1e-12)
    np.testing.assert_allclose(b1_bad.numeric, b1_good.numeric, rtol=1e-12)


def test_code_dir_that_is_not_a_folder(course):
    with pytest.raises(gradverify.GradverifyError, match="code_dir nowhere: not a folder"):
        gradverify.check(course / "net.yaml", code_dir="nowhere")
    res = CliRunner().invoke(app, ["check", "net.yaml", "--code-dir", "nowhere/"])
    assert res.exit_code == 2 and "--code-dir nowhere: not a folder" in res.stderr


def test_code_dir_under_confine(course):
    res = CliRunner().invoke(app, ["check", "net.yaml", "--confine", ".", "--code-dir", "students/alice"])
    assert res.exit_code == 0, res.stderr
    res = CliRunner().invoke(app, ["check", "net.yaml", "--confine", "students/bob", "--code-dir", "students/alice"])
    assert res.exit_code == 2 and "outside" in res.stderr


def test_unquoted_glob_checks_a_student_whose_folder_holds_a_config(course):
    """`--code-dir students/*/` unquoted: the shell passes bob's folder as an argument. Bob's folder
    also holds a copy of net.yaml; it is still bob's code (it was once taken for a folder of
    configs, bob's bug never ran, and the run ended 0)."""
    shutil.copy(course / "net.yaml", course / "students" / "bob" / "net.yaml")
    args = ["check", "net.yaml", "--code-dir", "students/alice/", "students/bob/", "students/carol/"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 1
    assert any(line.startswith("students/bob") and "FAIL" in line for line in res.stdout.split("\n"))


def test_the_probe_command_runs_the_same_code(course):
    """One student's run: "probe the worst element again" names --code-dir, and that command
    (node --code-dir) finds the same wrong element (without it, it would probe the config's own
    folder, where there is no layers.py)."""
    import shlex

    res = CliRunner().invoke(app, ["check", "net.yaml", "--code-dir", "students/bob"], env={"COLUMNS": "300"})
    assert res.exit_code == 1
    probe = next(line for line in res.stdout.split("\n") if line.startswith("probe the worst"))
    argv = shlex.split(probe.split(": ", 1)[1])
    assert argv[:2] == ["gradverify", "node"] and "--code-dir" in argv
    again = CliRunner().invoke(app, argv[1:])
    assert again.exit_code == 1 and "FAIL" in again.stdout

"""CI use: several configs per run (files and folders, one summary, the exit code the worst),
several outputs from one check (--json/--markdown/--junit files and --github annotations beside
the table, each equal to its --format), and the documented recipes run as written (the GitHub
Actions workflow in docs/recipes/, .pre-commit-hooks.yaml)."""
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



def test_several_configs_one_summary_exit_the_worst(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: []\ninptus: 1\n")
    res = runner.invoke(app, ["check", SEED, str(CONFIGS / "smooth.yaml")], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and res.stdout.count("gradverify check") == 2
    assert res.stdout.strip().split("\n")[-1] == "2 runs: 2 ok, 0 failed, 0 bad input · exit 0"
    res = runner.invoke(app, ["check", SEED, str(bad), str(CONFIGS / "smooth.yaml")], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "inptus: unknown key" in res.stderr
    assert res.stdout.strip().split("\n")[-1] == "3 runs: 2 ok, 0 failed, 1 bad input · exit 2"


def test_a_folder_is_every_gradverify_config_under_it(runner, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    (tmp_path / "sub" / "b.yml").write_text((CONFIGS / "smooth.yaml").read_text())
    (tmp_path / "compose.yaml").write_text("services: {web: {image: nginx}}\n")  # not a config
    res = runner.invoke(app, ["check", str(tmp_path), "--format", "json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 0
    assert [Path(r["config"]).name for r in doc["runs"]] == ["a.yaml", "b.yml"]
    assert "skipped 1 YAML file(s) that are not gradverify configs" in res.stderr
    assert runner.invoke(app, ["check", str(tmp_path / "sub"), "--format", "json"]).exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["check", str(empty)]).exit_code == 2


def test_several_outputs_from_one_check_equal_the_formats(runner, tmp_path):
    """--json/--markdown/--junit files and --github annotations alongside the table: each the
    same text as the single-output run of that format."""
    files = {k: tmp_path / f"out.{k}" for k in ("json", "markdown", "junit")}
    res = runner.invoke(app, ["check", SEED, "--json", str(files["json"]), "--markdown", str(files["markdown"]),
                              "--junit", str(files["junit"]), "--github"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    table = runner.invoke(app, ["check", SEED], env={"COLUMNS": "200"}).stdout
    github = runner.invoke(app, ["check", SEED, "--format", "github"]).stdout
    assert res.stdout == table + github
    assert json.loads(files["json"].read_text()) == json.loads(
        runner.invoke(app, ["check", SEED, "--format", "json"]).stdout)
    markdown = runner.invoke(app, ["check", SEED, "--format", "markdown"], env={"COLUMNS": "200"}).stdout
    assert files["markdown"].read_text().strip() == markdown.strip()
    assert 'testsuite name="gradverify.seed" tests="18"' in files["junit"].read_text()


def _recipe_commands(steps):
    return [s["run"] for s in steps if isinstance(s.get("run"), str) and s["run"].startswith("gradverify ")]


def test_github_actions_recipe_runs(runner, tmp_path, monkeypatch):
    """docs/recipes/github-actions.yml: its gradverify step, then its job-summary step in bash."""
    import shlex
    import shutil
    import subprocess

    import yaml

    root = Path(CONFIGS).parent
    workflow = yaml.safe_load((root / "docs" / "recipes" / "github-actions.yml").read_text())
    steps = workflow["jobs"]["gradverify"]["steps"]
    (command,) = _recipe_commands(steps)
    shutil.copytree(CONFIGS, tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, shlex.split(command)[1:])
    assert res.exit_code == 0, res.stderr
    summary_step = next(s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    summary = tmp_path / "summary.md"
    subprocess.run(["bash", "-c", summary_step["run"]], check=True, cwd=tmp_path,
                   env={"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"})
    assert summary.read_text().startswith("### gradverify: ⚠️ KINK")
    upload = next(s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact"))
    assert "<html" in (tmp_path / upload["with"]["path"]).read_text().lower()
    assert "::warning file=configs/seed.yaml" in res.stdout


def test_pre_commit_hook_runs(runner, tmp_path, monkeypatch):
    import re
    import shlex

    import yaml

    root = Path(CONFIGS).parent
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "gradverify" and hook["pass_filenames"] is False
    assert re.search(hook["files"], "layers.py") and re.search(hook["files"], "net.gradverify.yaml")
    entry = shlex.split(hook["entry"])
    assert entry[0] == "gradverify"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gradverify.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    assert runner.invoke(app, entry[1:]).exit_code == 0
    (tmp_path / "gradverify.yaml").unlink()
    (tmp_path / "pyproject.toml").write_text('[tool.gradverify]\nconfigs = ["net.yaml"]\nstrict = true\n')
    (tmp_path / "net.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    assert runner.invoke(app, entry[1:]).exit_code == 1  # the kinks, under the project's strict


def test_every_dependency_floor_is_the_pin_ci_runs_the_suite_at():
    """pyproject.toml's `name>=floor` (with its marker) for every run-time dependency equals a
    `name==floor` line of .ci/floors.txt, which .ci/run installs and tests on Python 3.10: a floor
    raised in one file and not the other would go untested."""
    import re

    from conftest import ROOT
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pin, _, marker = line.partition(";")
            name, version = pin.strip().split("==")
            pins[name.lower()] = (version, marker.replace("'", '"').strip())
    assert len(deps) >= 5
    for dep in deps:
        spec, _, marker = dep.partition(";")
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", spec.strip())
        assert m, f"{dep}: a floor (>=) and nothing else"
        assert pins.get(m.group(1).lower()) == (m.group(2), marker.replace("'", '"').strip()), dep

"""[tool.gradverify] in pyproject.toml: found upward from the working directory, flags override it,
--show-settings says where each value came from, and a bad value is one located line, exit 2."""
import json

import pytest
from typer.testing import CliRunner

from gradverify import settings
from gradverify.cli import app

from conftest import CONFIGS


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project with the seed network under configs/ and the working directory in a subfolder."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "net.yaml").write_text((CONFIGS / "seed.yaml").read_text())
    (tmp_path / "src" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "src" / "deep")
    return tmp_path


def _pyproject(root, body):
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.gradverify]\n" + body)


def test_found_upward_and_paths_relative_to_it(project):
    _pyproject(project, 'configs = ["configs/net.yaml"]\nmethod = "central"\nrtol = 1e-5\n')
    r = settings.resolve({})
    assert r.file == project / "pyproject.toml"
    assert r["configs"] == (project / "configs" / "net.yaml",) and r["method"] == "central" and r["rtol"] == 1e-5
    assert r.sources["method"] == f"{project / 'pyproject.toml'}:6" and r.sources["atol"] == "default"


def test_nearest_pyproject_with_the_table_wins(project):
    _pyproject(project, 'method = "central"\n')
    (project / "src" / "pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no table: skipped
    (project / "src" / "deep" / "pyproject.toml").write_text('[tool.gradverify]\nmethod = "richardson"\n')
    assert settings.resolve({})["method"] == "richardson"
    (project / "src" / "deep" / "pyproject.toml").unlink()
    assert settings.resolve({})["method"] == "central"


def test_no_settings_anywhere_is_the_defaults(project):
    r = settings.resolve({})
    assert r.file is None and r.values == settings.DEFAULTS


def test_bare_check_uses_the_settings_and_flags_override(project):
    _pyproject(project, 'configs = ["configs/net.yaml"]\nstrict = true\n')
    runner = CliRunner()
    res = runner.invoke(app, ["check", "--format", "json"])
    doc = json.loads(res.stdout)
    # the seed network has 5 nodes at ReLU's kink: strict from the settings makes them fail
    assert res.exit_code == 1 and doc["summary"]["kink"] == 5 and doc["summary"]["strict"] is True
    res = runner.invoke(app, ["check", "--format", "json", "--no-strict"])
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"]["strict"] is False


def test_output_files_from_settings(project):
    _pyproject(project, 'configs = ["configs/net.yaml"]\njson = "out/report.json"\nmarkdown = "out/summary.md"\n')
    (project / "out").mkdir()
    res = CliRunner().invoke(app, ["check", "-q"])
    assert res.exit_code == 0, res.stderr
    assert json.loads((project / "out" / "report.json").read_text())["summary"]["kink"] == 5
    assert (project / "out" / "summary.md").read_text().startswith("### gradverify: ⚠️ KINK")


def test_show_settings_says_where_each_value_came_from(project):
    _pyproject(project, 'method = "central"\nrtol = 1e-6\n')
    res = CliRunner().invoke(app, ["check", "--show-settings", "--rtol", "1e-4"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    rows = {line.split()[0]: line for line in res.stdout.splitlines()}
    assert rows["method"].split()[1:] == ["central", f"{project / 'pyproject.toml'}:5"]
    assert rows["rtol"].split()[1:] == ["0.0001", "--rtol"]
    assert rows["atol"].split()[1:] == ["-", "default"]


@pytest.mark.parametrize("body, line, message", [
    ("rtol = -1\n", 6, "tool.gradverify.rtol: -1: expected a finite number ≥ 0"),
    ('method = "centrl"\n', 6, "tool.gradverify.method: 'centrl': expected one of auto"),
    ("sample = 0\n", 6, "tool.gradverify.sample: 0: expected an integer ≥ 1"),
    ('strict = "yes"\n', 6, "tool.gradverify.strict: 'yes': expected True or False"),
    ("rtoll = 1e-3\n", 6, "tool.gradverify.rtoll: unknown key (did you mean 'rtol'"),
    ("configs = 3\n", 6, "tool.gradverify.configs: 3: expected a path or a list of paths"),
])
def test_bad_value_is_one_located_line_exit_2(project, body, line, message):
    _pyproject(project, 'seed = 0\n' + body)
    res = CliRunner().invoke(app, ["check", str(project / "configs" / "net.yaml")])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith(f"gradverify: error: ../../pyproject.toml:{line}: ")  # as typed from src/deep
    assert message in res.stderr
    assert len(res.stderr.strip().split("\n")) == 1


def test_invalid_toml_is_exit_2(project):
    (project / "pyproject.toml").write_text("[tool.gradverify]\nrtol = \n")
    res = CliRunner().invoke(app, ["check", str(project / "configs" / "net.yaml")])
    assert res.exit_code == 2 and "not valid TOML" in res.stderr


@pytest.mark.parametrize("text", ["[tool.gradverify\nmethod = 'central'\n", "tool.gradverify = 3\n"])
def test_a_table_named_but_malformed_is_not_ignored(project, text):
    (project / "pyproject.toml").write_text(text)
    res = CliRunner().invoke(app, ["check", str(project / "configs" / "net.yaml")])
    assert res.exit_code == 2 and "pyproject.toml" in res.stderr and "Traceback" not in res.output


def test_show_settings_checks_the_flags(project):
    res = CliRunner().invoke(app, ["check", "--show-settings", "--rtol", "-1"])
    assert res.exit_code == 2 and "--rtol -1" in res.stderr

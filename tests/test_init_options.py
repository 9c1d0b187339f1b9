"""`gradverify init` refuses options that would write a config `check` refuses: one line, exit
2, nothing written."""
import pytest
from typer.testing import CliRunner

from gradverify.cli import app


@pytest.mark.parametrize("args, words", [
    (["--rows", "0"], "--rows 0: expected an integer ≥ 1"),
    (["--rows", "-1"], "--rows -1: expected an integer ≥ 1"),
    (["--seed", "-1"], "--seed -1: expected an integer ≥ 0"),
    (["--layers", "100000,100000,3"], "layer 1's weights (100000×100000) would have 10,000,000,000 elements"),
    (["--rows", "2000000", "--layers", "100,3"], "--rows × the input width would have 200,000,000 elements"),
    (["--layers", "3000,3000,3000"], "the arrays would have 18,030,000 elements together"),
    (["--layers", "4,0,3"], "--layers takes at least two positive widths"),
])
def test_bad_init_options_write_nothing(tmp_path, args, words):
    path = tmp_path / "g.yaml"
    res = CliRunner().invoke(app, ["init", str(path), *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradverify: error: ") and words in lines[0], res.stderr
    assert not path.exists()


def test_a_large_starter_within_the_limits_passes_check(tmp_path):
    path = tmp_path / "g.yaml"
    assert CliRunner().invoke(app, ["init", str(path), "--layers", "1000,3000,3", "--rows", "2"]).exit_code == 0
    from gradverify.config import load
    assert load(path).layers[0].weights.shape == (1000, 3000)

"""Configs: the forms an array can take, and bad input refused with the key, line and column."""
import re

import numpy as np
import pytest

from gradverify import config
from gradverify.build import build
from gradverify.errors import ConfigError

from conftest import CONFIGS

SEED = (CONFIGS / "seed.yaml").read_text()


def err(text, tmp_path=None, **kw) -> str:
    """The message for a bad config, refused by config or (an unknown name) by build."""
    with pytest.raises(ConfigError) as e:
        build(config.parse(text, file="c.yaml", base_dir=tmp_path or ".", **kw))
    return str(e.value)


def test_seed_parses():
    c = config.parse(SEED)
    assert c.inputs.tolist() == [[2], [-5]] and c.labels.tolist() == [1, 0]
    assert c.reg_strength == 0.05 and c.loss == "softmax_cross_entropy" and c.stable is False
    assert [layer.activation for layer in c.layers] == ["relu", None]


GENERATED = """
seed: 3
inputs: {file: x.npy}
labels: {classes: 4}
layers:
  - {weights: {shape: [2, 5], init: normal, std: 0.1}, bias: {shape: [5], init: zeros}, activation: tanh}
  - {weights: {shape: [5, 4], init: uniform, std: 0.5}, bias: [0, 0, 0, 0]}
"""


def test_generated_and_file_arrays(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(6.0).reshape(3, 2))
    c = config.parse(GENERATED, base_dir=tmp_path)
    assert c.inputs.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert c.layers[0].weights.shape == (2, 5) and np.all(c.layers[0].bias == 0)
    assert np.all(np.abs(c.layers[1].weights) <= 0.5)
    assert c.labels.shape == (3,) and set(c.labels) <= {0, 1, 2, 3}
    again = config.parse(GENERATED, base_dir=tmp_path)
    assert np.array_equal(again.layers[0].weights, c.layers[0].weights)  # same seed, same draw
    other = config.parse(GENERATED.replace("seed: 3", "seed: 4"), base_dir=tmp_path)
    assert not np.array_equal(other.layers[0].weights, c.layers[0].weights)


def test_shape_mismatch_names_both_layers_and_line():
    bad = SEED.replace("[[0.8, -0.1], [1.3, 0.15], [-1.1, 0.95]]",
                       "[[0.8, -0.1], [1.3, 0.15], [-1.1, 0.95], [1, 1]]")
    msg = err(bad)
    assert msg.startswith("c.yaml:10:")  # the line of the second layer's weights
    assert "layers[1].weights: expected 3 rows to match layer 1's 3 outputs, got 4" in msg
    assert "these weights are 4×2; layer 1's weights 1×3" in msg


@pytest.mark.parametrize("change,words", [
    (("activation: relu", "activation: rleu"), ["layers[0].activation", "unknown activation 'rleu'",
                                                "did you mean 'relu'", "valid: relu"]),
    (("regularization:", "regularisation:"), ["unknown key 'regularisation'",
                                              "did you mean 'regularization'"]),
    (("labels: [1, 0]", "labels: [1, 0, 1]"), ["labels: expected 2 labels"]),
    (("labels: [1, 0]", "labels: [1, 2]"), ["labels[1]", "class 2 is out of range"]),
    (("labels: [1, 0]", "labels: [1, 0.5]"), ["labels[1]", "expected a class index"]),
    (("bias: [-1, 3, 1]", "bias: [-1, 3]"), ["layers[0].bias", "expected 3 values"]),
    (("inputs: [[2], [-5]]", "inputs: [[2], [-5, 1]]"), ["inputs[1]", "ragged"]),
    (("inputs: [[2], [-5]]", "inputs: [[2], [.nan]]"), ["inputs[1][0]", "finite"]),
    (("inputs: [[2], [-5]]", "inputs: [[2], [abc]]"), ["inputs[1][0]", "expected a number"]),
    (("type: softmax_cross_entropy", "type: softmax"), ["loss.type", "unknown loss"]),
])
def test_bad_values_are_located(change, words):
    msg = err(SEED.replace(*change))
    for w in words:
        assert w in msg, msg
    assert msg.startswith("c.yaml:")


def test_yaml_syntax_error_has_line():
    msg = err("inputs: [[2], [-5]\nlabels: [1, 0]\n")
    assert msg.startswith("c.yaml:") and "invalid YAML" in msg


def test_not_a_mapping_and_empty():
    assert "must be a mapping" in err("- 1\n- 2\n")
    assert "empty" in err("")
    assert "empty" in err("# only a comment\n")


def test_missing_keys():
    assert "missing `layers:`" in err("inputs: [[1]]\n")
    assert "missing `weights:`" in err("inputs: [[1]]\nlabels: [0]\nlayers: [{bias: [1]}]\n")
    assert "missing `labels:`" in err("inputs: [[1]]\nlayers: [{weights: [[1]], bias: [1]}]\n")


def test_python_tags_are_refused():
    msg = err("inputs: !!python/object/apply:os.system ['echo pwned']\n")
    assert "not allowed" in msg and "inputs" in msg
    msg = err("inputs: !!python/name:os.system\n")
    assert "not allowed" in msg


def test_billion_laughs_is_refused_before_expanding():
    lol = "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
    prev = "a"
    for i in range(9):
        lol += f"b{i}: &b{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        prev = f"b{i}"
    # refused while reading, at the alias that goes over, not after expanding 10^10 values
    assert err(lol) == ("c.yaml:7:38: b5: the YAML expands to more than 10,100,000 values (aliases repeated too "
                        "often?); raise --max-elements if this is intended")


def test_element_budget_before_allocating():
    msg = err("inputs: {shape: [100000, 100000]}\nlabels: [0]\nlayers: []\n")
    # refused at the shape, naming the count and the limit, before the (empty) layers are looked at
    assert msg == ("c.yaml:1:10: inputs.shape: 10,000,000,000 elements is more than the limit of "
                   "10,000,000 (raise it with --max-elements)")
    small = err("inputs: {shape: [40, 40]}\nlabels: [0]\nlayers: []\n", max_elements=1000)
    assert "inputs.shape: 1,600 elements is more than the limit of 1,000 " in small


def test_npy_pickle_is_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    msg = err("inputs: {file: o.npy}\nlabels: [0]\nlayers: [{weights: [[1]], bias: [1]}]\n", tmp_path)
    assert "inputs.file" in msg and "expected numbers" in msg


def test_duplicate_key():
    assert "given twice" in err("seed: 1\nseed: 2\n")


def test_load_path_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        config.load(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ConfigError, match="binary"):
        config.load(tmp_path / "bin.yaml")


def test_deep_nesting_is_refused():
    assert "nest" in err("inputs: " + "[" * 20000 + "]" * 20000 + "\n")
    # the limit is 32 levels, the config's own mapping included: refused where the 33rd opens
    assert err("inputs: " + "[" * 32 + "1" + "]" * 32 + "\n") == "c.yaml:1:40: nested more than 32 levels deep"
    assert "nested" not in err("inputs: " + "[" * 31 + "1" + "]" * 31 + "\n")


def test_config_knows_no_op_names_and_only_its_reader_imports_yaml():
    """Names belong to build: validating a config loads neither ops nor build."""
    import subprocess
    import sys
    code = ("import sys, gradverify.config; "
            "print(sorted(m for m in sys.modules if m.startswith('gradverify')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "gradverify.ops" not in loaded and "gradverify.build" not in loaded
    from conftest import ROOT
    importers = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "gradverify").rglob("*.py")
                       if "import yaml" in p.read_text() or "from yaml" in p.read_text())
    assert importers == ["gradverify/config/yaml_reader.py"]


def test_integers_beyond_2_64_are_numbers_not_crashes():
    base = "inputs: [[1.0, 2.0]]\nlayers: [{weights: [[1.0], [2.0]], bias: [0.0]}]\nlabels: [0]\n"
    c = config.parse(f"seed: {2**64}\nregularization: {2**64}\n" + base)
    assert c.seed == 2**64 and c.reg_strength == float(2**64)
    assert err("regularization: {include: [w1, b1, w1]}\n" + base) == (
        "c.yaml:1:36: regularization.include[2]: 'w1' is listed twice")


@pytest.mark.parametrize("op, attrs, words", [
    ("neg_log_pick", {"labels": [0.5]}, "got fractional numbers"),
    ("neg_log_pick", {"labels": [-1]}, "labels must be ≥ 0, got -1"),
    ("hinge_margins", {"labels": [[0]]}, "(1-D), got shape [1, 1]"),
    ("hinge_margins", {"labels": [True]}, "got booleans"),
    ("hinge_margins", {"labels": [0], "margin": "1"}, "margin must be a number"),
    ("sub_const", {"targets": [["a"]]}, "got text"),
    # numpy < 1.24 makes ragged lists object arrays instead of raising: either message is right
    ("weighted_sum", {"weights": [[1], [2, 3]]}, "weights must"),
    ("exp", {"stable": "no"}, "stable must be true or false"),
    ("leaky_relu", {"alpha": "x"}, "alpha must be a number"),
])
def test_op_constructors_refuse_bad_attrs(op, attrs, words):
    from gradverify.ops import OPS
    with pytest.raises(ValueError, match=re.escape(words)):
        OPS[op](**attrs)

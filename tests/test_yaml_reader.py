"""The YAML reader: values counted while reading (a huge config is refused early, by key), YAML
1.2 numbers and booleans, merge keys and explicit tags refused with a located line."""
import json
import time

import pytest

from gradverify import config
from gradverify.config.model import Source
from gradverify.config.yaml_reader import read_yaml
from gradverify.errors import ConfigError

BASE = "inputs: [[1.0, 2.0]]\nlayers: [{weights: [[1.0], [2.0]], bias: [0.0]}]\nlabels: [0]\n"


def value(text):
    return read_yaml(f"v: {text}\n", Source(file="c.yaml"), 1000)["v"]


def err(text, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        config.parse(text, file="c.yaml", **kw)
    return str(e.value)


@pytest.mark.parametrize("text, want", [
    ("1e-8", 1e-8), ("5e-2", 0.05), ("1E+3", 1000.0), (".5", 0.5), ("-1.", -1.0), ("1e-05", 1e-05),
    ("010", 10), ("0o17", 15), ("0x1F", 31), ("-3", -3), ("+7", 7), ("190:20:30", "190:20:30"),
    ("1_000", "1_000"), ("true", True), ("False", False), ("yes", "yes"), ("no", "no"), ("on", "on"),
    ("off", "off"), ("y", "y"), ("~", None), ("null", None), ("", None), ("'1e-8'", "1e-8"),
    ("!!str 12", "12"), ("!!int 12", 12), ("!!float 1", 1.0), ("!!bool true", True), ("!!null ~", None),
])
def test_scalars_are_yaml_1_2(text, want):
    got = value(text)
    assert got == want and type(got) is type(want)


def test_inf_and_nan_as_before():
    assert value(".inf") == float("inf") and value("-.Inf") == float("-inf") and value(".nan") != value(".nan")
    assert value("[1e-8, 010, 0x1F, 1e400]") == [1e-8, 10, 31, float("inf")]


def test_exponent_tolerance_and_json_dump_configs_load():
    assert config.parse("tolerance: {rtol: 1e-8, atol: 5e-2}\n" + BASE).rtol == 1e-8
    data = {"inputs": [[1e-05, 2.0]], "layers": [{"weights": [[1e-05], [2.0]], "bias": [0.0]}], "labels": [0]}
    assert config.parse(json.dumps(data)).inputs.tolist() == [[1e-05, 2.0]]


@pytest.mark.parametrize("text, words", [
    ("seed: !!int 3.5\n", "c.yaml:1:1: seed: !!int '3.5' is not an integer"),
    ("seed: !!float abc\n", "c.yaml:1:1: seed: !!float 'abc' is not a number"),
    ("loss: {stable: !!bool maybe}\n", "c.yaml:1:8: loss.stable: !!bool 'maybe' is not true or false"),
    ("seed: !!null 3\n", "c.yaml:1:1: seed: !!null '3' is not null or ~"),
    ("inputs: [[1, !!int x]]\n", "c.yaml:1:14: inputs[0][1]: !!int 'x' is not an integer"),
    ("inputs: [[1" + "0" * 400 + ", 2]]\n", "c.yaml:1:11: inputs[0][0]: the integer 10000000000000000000… is "
                                            "too large"),
    ("a: &a {x: 1}\n<<: *a\n", "c.yaml:2:1: merge keys (<<) are not supported"),
    ("inputs: {<<: {file: x.npy}}\n", "c.yaml:1:10: inputs: merge keys (<<) are not supported"),
    ("inputs: !!set {a}\n", "c.yaml:1:1: inputs: the YAML tag 'tag:yaml.org,2002:set' is not allowed"),
    ("inputs: *nowhere\n", "c.yaml:1:1: inputs: the alias *nowhere names no anchor"),
    ("a: 1\n---\nb: 2\n", "c.yaml:2:1: expected one YAML document"),
])
def test_bad_scalars_and_tags_are_located(text, words):
    assert err(text + BASE if "inputs" not in text else text).startswith(words)


def test_quoted_merge_key_is_a_name():
    assert "'<<'" in err("'<<': 1\n" + BASE)  # an unknown key, not a merge


def test_values_are_counted_while_reading_and_named_by_key():
    text = "inputs: [" + ", ".join(["1.5"] * 600_000) + "]\n" + BASE.split("\n", 1)[1]
    start = time.perf_counter()
    message = err(text, max_elements=1000)
    assert time.perf_counter() - start < 1.0
    assert message.startswith("c.yaml:1:504995: inputs: the YAML holds more than 101,000 values (the limit of "
                              "1,000 array elements, plus 100,000 for keys and settings)"), message


def test_an_array_within_the_limits_keeps_every_place():
    text = "inputs: [[1, 2], [3, .nan]]\n" + BASE.split("\n", 1)[1]
    assert err(text) == "c.yaml:1:22: inputs[1][1]: contains nan at index [1, 1]: every value must be finite"
    assert err("inputs: [[1, 2], [3, x]]\n" + BASE.split("\n", 1)[1]).startswith(
        "c.yaml:1:22: inputs[1][1]: expected a number, got the text 'x'")

"""Every config ends in one of three clean outcomes: checked (exit 0/1) or refused with one line
(exit 2). Never a traceback. A hand-written corpus of nasty configs is replayed on every run, and
hypothesis generates more (valid ones and mutations of them).

A longer fuzz run: GRADVERIFY_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py
"""
import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gradverify.cli import app
from gradverify.errors import one_line

from conftest import CONFIGS

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.yaml"))
EXAMPLES = int(os.environ.get("GRADVERIFY_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def outcome(path: Path):
    res = CliRunner().invoke(app, ["check", str(path), "--format", "json", "--max-memory", "32"])
    assert res.exit_code in (0, 1, 2), (res.exit_code, res.output)
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if res.exit_code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gradverify: error: "), res.stderr
        assert "internal error" not in lines[0], lines[0]
        doc = json.loads(res.stdout)  # the JSON error object: the same message, located
        assert doc["status"] == "error" and lines[0] == f"gradverify: error: {one_line(doc['message'])}", res.stdout
    return res


#: for each corpus config, the words that must locate its problem (after "file:line:col: ")
WHERE = {
    "billion_laughs": ":7:38: b5: the YAML expands to more than", "binary": ": is a binary file",
    "bool_labels": ":2:10: labels[0]: expected a class index", "custom_tag": ":1:1: inputs: the YAML tag '!mytag'",
    "deep_nesting": ":1:1008: invalid YAML: exceeded maximum nesting depth",
    "deep_nesting_maps": ":34:65: nested more than 32 levels", "duplicate_keys": ":2:1: inputs: this key is given twice",
    "empty": ":1: the config is empty", "empty_list": ":1:1: inputs: empty list",
    "graph_bad_attrs": ":3:36: graph[0].attrs: bad attrs for op relu",
    "graph_cycle": ":2:1: graph: the graph has a cycle: a -> b -> a",
    "graph_labels_out_of_range": ":5:3: graph[1]: neg_log_pick cannot take p of shape [1, 2]",
    "graph_self_loop": ":2:1: graph: the graph has a cycle: a -> a",
    "graph_shape_mismatch": ":3:3: graph[0]: matmul cannot take x, w of shape [1, 2] and [1, 2]",
    "huge_logits_stable": ": loss: the forward pass made Inf at node neg_log",
    "huge_shape": ":1:10: inputs.shape: 1,000,000,000,000 elements is more than the limit",
    "inf": ":1:11: inputs[0][0]: contains inf", "latin1": ": is not UTF-8 text",
    "layer_not_mapping": ":3:10: layers[0]: expected a mapping",
    "layers_not_list": ":3:1: layers: expected a list",
    "list": ":1:1: the config must be a mapping",
    "missing_custom": ":3:44: layers[0].activation: ../../nowhere.py:relu: no such file",
    "nan": ":1:11: inputs[0][0]: contains nan",
    "negative_shape": ":1:10: inputs.shape: expected a list of positive integers",
    "only_comment": ":1: the config is empty",
    "overflow_logits": ":4:1: loss: the forward pass made Inf at node exps",
    "python_name": ":1:1: loss: the YAML tag", "python_tag": ":1:1: inputs: the YAML tag",
    "ragged": ":1:18: inputs[1]: ragged array", "scalar": ":1:1: the config must be a mapping",
    "string_labels": ":2:1: labels: expected a list of class indices",
    "strings_in_array": ":1:11: inputs[0][0]: expected a number",
    "tabs": ":2:1: invalid YAML", "unclosed": ":2:7: invalid YAML",
    "unicode": ":3:44: layers[0].activation: unknown activation 'rélu' (did you mean 'relu'?)",
    "unknown_everything": ":1:1: inptus: unknown key 'inptus' in the config (did you mean 'inputs'?)",
    "user_base_exception_at_import": ":3:66: layers[0].activation: code/base_exception_at_import.py:relu: "
                                     "importing base_exception_at_import.py raised Quit: <unprintable Quit>",
    "user_exit_at_import": ":3:66: layers[0].activation: code/exit_at_import.py:relu: importing "
                           "exit_at_import.py called sys.exit(0)",
    "user_interrupt_at_import": ":3:66: layers[0].activation: code/interrupt_at_import.py:relu: importing "
                                "interrupt_at_import.py raised KeyboardInterrupt itself (not a Ctrl-C)",
    "weights_3d": ":3:11: layers[0].weights: expected the weights as a list of rows (2-D), got 3-D",
    "zero_reciprocal": ":3:3: graph[0]: the forward pass made Inf at node r",
    "reg_include_twice": ":1:51: regularization.include[2]: 'w1' is listed twice",
    "reg_include_empty": ":1:18: regularization.include: an empty list",
    "merge_key": ":2:1: merge keys (<<) are not supported",
    "tag_int_bad": ":1:1: seed: !!int '3.5' is not an integer",
    "tag_bool_bad": ":1:37: loss.stable: !!bool 'maybe' is not true or false",
    "huge_int": ":1:11: inputs[0][0]: the integer 10000000000000000000… is too large",
    "graph_l2_no_inputs": ":3:29: graph[0].inputs: op l2_penalty takes one input or more, got none",
    "graph_sub_const_text": ":3:41: graph[0].attrs: bad attrs for op sub_const: targets must be a non-empty "
                            "array of numbers, got text",
    "graph_weighted_sum_shape": ":3:3: graph[0]: weighted_sum cannot take x of shape [1, 2]: weights of shape "
                                "[1, 1, 2] must have x's shape",
    "graph_labels_short": ":4:3: graph[1]: neg_log_pick cannot take p of shape [2, 2]: 1 labels for 2 rows",
    "graph_labels_nested": ":4:44: graph[1].attrs: bad attrs for op neg_log_pick: labels must be a non-empty "
                           "list of class indices (1-D), got shape [2, 1]",
    "graph_labels_negative": ":3:45: graph[0].attrs: bad attrs for op hinge_margins: labels must be ≥ 0, got -1",
    "graph_labels_float": ":3:45: graph[0].attrs: bad attrs for op hinge_margins: labels must be class "
                          "indices (integers ≥ 0), got fractional numbers",
    "big_ints_and_yes": ":3:25: tolerance.atol: expected a number, got the text 'yes'",
}


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus(path):
    res = outcome(path)
    assert res.exit_code == 2  # every config in the corpus is bad in some way
    assert f"{path.name}{WHERE[path.stem]}" in res.stderr, res.stderr
    assert not Path("/tmp/pwned").exists()


def test_corpus_is_all_located():
    assert sorted(WHERE) == sorted(p.stem for p in CORPUS)


# ---- generated configs --------------------------------------------------------------------

numbers = st.one_of(st.integers(-5, 5), st.floats(-3, 3, allow_nan=False, allow_infinity=False))
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=6), numbers,
                 st.floats(allow_nan=True, allow_infinity=True), st.lists(numbers, max_size=3))


@st.composite
def matrix(draw, rows, cols):
    return [[draw(numbers) for _ in range(cols)] for _ in range(rows)]


@st.composite
def network(draw):
    n, d = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    widths = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    layers, prev = [], d
    for h in widths:
        layer = {"weights": draw(matrix(prev, h)), "bias": [draw(numbers) for _ in range(h)]}
        act = draw(st.sampled_from([None, "relu", "tanh", "sigmoid", "leaky_relu", "identity", "softmax"]))
        if act:
            layer["activation"] = act
        layers.append(layer)
        prev = h
    loss = draw(st.sampled_from(["softmax_cross_entropy", "hinge", "mse", "cross_entropy"]))
    cfg = {"inputs": draw(matrix(n, d)), "layers": layers, "loss": loss}
    if loss == "mse":
        cfg["targets"] = draw(matrix(n, prev))
    else:
        cfg["labels"] = [draw(st.integers(0, prev - 1)) for _ in range(n)]
    if draw(st.booleans()):
        cfg["regularization"] = draw(st.floats(0, 1))
    return cfg


def mutate(cfg, draw):
    """Replace, delete or add one key somewhere in the config."""
    node, path = cfg, []
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        path.append((node, key))
        node = node[key]
    if not path:
        cfg[draw(st.sampled_from(["inputs", "layers", "labels", "loss", "weird", "seed", "dtype"]))] = draw(junk)
        return cfg
    parent, key = path[-1]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[key] = draw(junk)
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=5))] = draw(junk)
    else:
        parent.append(draw(junk))
    return cfg


@FUZZ
@given(data=st.data())
def test_generated_configs(tmp_path, data):
    cfg = data.draw(network())
    if data.draw(st.booleans()):
        cfg = mutate(cfg, data.draw)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(cfg))
    outcome(path)


@FUZZ
@given(text=st.text(max_size=200))
def test_arbitrary_text(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    res = outcome(path)
    assert res.exit_code == 2 or text.strip()


@FUZZ
@given(data=st.data())
def test_seed_mutations(tmp_path, data):
    cfg = yaml.safe_load((CONFIGS / "seed.yaml").read_text())
    cfg = mutate(cfg, data.draw)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(cfg))
    outcome(path)


#: names that a terminal or rich could misread: markup, escapes, control characters, quotes
NAME = st.text(alphabet=st.sampled_from(list("ab_[]/=#:'\"\\ \x1b\x07\x00\t\n\r\x85\x9b\u200b\u2028é"))
               | st.characters(max_codepoint=0xFFFF, exclude_categories=["Cs"]), min_size=1, max_size=8)
#: small and large numbers, written in exponent form (as json.dump and %e do)
EXP = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False).map(lambda v: f"{v:.4e}") | \
    st.sampled_from(["1e-8", "5e-2", "1E+2", "-3.5e-05", "010", "0x1F", "0o17", ".5", "-1."])


@st.composite
def graph_config(draw) -> str:
    """The graph form with arbitrary node names and numbers in exponent form, as JSON text."""
    names = draw(st.lists(NAME, min_size=5, max_size=5, unique=True))
    x, w, out, p, nl = names
    n, d, c = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 3))
    row = lambda k: "[" + ", ".join(draw(EXP) for _ in range(k)) + "]"  # noqa: E731
    values = {x: "[" + ", ".join(row(d) for _ in range(n)) + "]", w: "[" + ", ".join(row(c) for _ in range(d)) + "]"}
    def q(name: str) -> str:  # a JSON string, every non-ASCII character as a \\uXXXX escape
        return json.dumps(name)

    nodes = [f'{{"name": {q(out)}, "op": "matmul", "inputs": [{q(x)}, {q(w)}]}}',
             f'{{"name": {q(p)}, "op": "softmax", "inputs": [{q(out)}]}}',
             f'{{"name": {q(nl)}, "op": "neg_log_pick", "inputs": [{q(p)}]}}',
             '{"name": "total", "op": "sum", "inputs": [' + q(nl) + "]}"]
    labels = [draw(st.integers(0, c - 1)) for _ in range(n)]
    return ("{" + f'"values": {{{", ".join(f"{q(k)}: {v}" for k, v in values.items())}}}, "inputs": [{q(x)}], '
            f'"labels": {labels}, "graph": [{", ".join(nodes)}], "loss": "total", '
            f'"tolerance": {{"rtol": {draw(EXP).lstrip("-")}}}' + "}")


@FUZZ
@given(text=graph_config())
def test_graph_names_and_exponent_numbers(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    res = outcome(path)
    if res.exit_code in (0, 1):
        json.loads(res.stdout)


# ---- large inline lists: read from the raw text, or from the events: the same ------------------

TOKEN = st.sampled_from(["1", "-2.5", "1e-3", "3E+2", "0", "-0.0", "7", "010", ".5", "+1", "1.", "1e400", "12"])
#: what may break the strict form, or make the list not a list at all
NASTY = st.sampled_from(["", ",", "]", "[", "[]", "x", "#", " #c\n", "'", '"', "- ", ": ", "&a ", "*a", "!!str ",
                         "\r", "\t", "\n  ", "\n", "{", "}", "1" * 320, ", ,", "--- ", "\n---\n", "é", "\x85"])
PREFIX = st.sampled_from(["a: ", "- ", "{a: ", "a: &x ", "a: !!seq ", "a: '", "a: # ", "a: |\n  ", "", "a:\n  - ",
                          '{"a": ', "a: x", "a:\n  b: ", "a: !!str ", "é: ", "? "])
SUFFIX = st.sampled_from(["\n", "}\n", "'\n", " # c\n", "\nb: 1\n", "x\n", ": 1\n", ",\n", "\nb: *x\n", "]\n",
                          "\n  c: 1\n", "", "\r\n", ", b: [1, 2]}\n"])


@st.composite
def inline_list(draw) -> str:
    rows = [", ".join(draw(st.lists(TOKEN, min_size=60, max_size=90))) for _ in range(draw(st.integers(1, 3)))]
    seps = [draw(st.sampled_from([", ", ",\n  ", ",\r\n ", ",\t"])) for _ in rows]
    body = "[" + "".join(f"[{r}]" + s for r, s in zip(rows, seps))[:-len(seps[-1])] + "]"
    if draw(st.booleans()):  # something nasty somewhere in it
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(NASTY) + body[at:]
    return draw(PREFIX) + body + draw(SUFFIX)


@FUZZ
@given(text=inline_list())
def test_fast_inline_lists_agree_with_the_events(text):
    """Differential: whatever the text around or inside a large inline list, reading it fast
    (config.fastflow) gives the value, or the error, and the places that reading every number
    as a YAML event gives."""
    from gradverify.config import fastflow
    from gradverify.config.model import Source
    from gradverify.config.yaml_reader import read_yaml
    from gradverify.errors import ConfigError

    paths = [("a",), ("a", 0), ("a", 1, 7), ("a", 2, 59), (0,), (0, 1), ("a", "b"), ("b",), ("b", 1)]
    out = []
    for fast in (True, False):
        src = Source(file="c.yaml")
        prescan = fastflow.prescan
        if not fast:
            fastflow.prescan = lambda t: (t, {})
        try:
            got = read_yaml(text, src, 10**6)
        except ConfigError as e:
            got = str(e)
        finally:
            fastflow.prescan = prescan
        out.append((repr(got), [src.locate(p) for p in paths]))
    assert out[0] == out[1]

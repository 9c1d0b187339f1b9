"""The YAML reader: values counted while reading (a huge config is refused early, by key), YAML
1.2 numbers and booleans, merge keys and explicit tags refused with a located line."""
import json

import pytest

from gradverify import config
from gradverify.config import fastflow
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


def test_values_are_counted_while_reading_and_named_by_key(monkeypatch):
    text = "inputs: [" + ", ".join(["1.5"] * 600_000) + "]\n" + BASE.split("\n", 1)[1]
    # refused from the count alone: the numbers are never converted (timings: bench/config_load.py)
    monkeypatch.setattr(fastflow.json, "loads", _never)
    message = err(text, max_elements=1000)
    assert message.startswith("c.yaml:1:504995: inputs: the YAML holds more than 101,000 values (the limit of "
                              "1,000 array elements, plus 100,000 for keys and settings)"), message


def test_an_array_within_the_limits_keeps_every_place():
    text = "inputs: [[1, 2], [3, .nan]]\n" + BASE.split("\n", 1)[1]
    assert err(text) == "c.yaml:1:22: inputs[1][1]: contains nan at index [1, 1]: every value must be finite"
    assert err("inputs: [[1, 2], [3, x]]\n" + BASE.split("\n", 1)[1]).startswith(
        "c.yaml:1:22: inputs[1][1]: expected a number, got the text 'x'")


def _never(*args, **kw):
    raise AssertionError("the numbers were converted")


def _both_ways(text: str, monkeypatch, paths=()):
    """(value or error, places of `paths`) read with the fast inline lists and from the events
    alone (the reader before them, a second method)."""
    out = []
    for fast in (True, False):
        src = Source(file="c.yaml")
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(fastflow, "prescan", lambda t: (t, {}))
            try:
                got = read_yaml(text, src, 10**6)
            except ConfigError as e:
                got = str(e)
        out.append((got, [src.locate(p) for p in paths]))
    return out


ROW = "[" + ", ".join(f"{i}" if i % 3 else f"{i}.25e-3" for i in range(-150, 150)) + "]"
NUMBERS = [int(t) if "." not in t else float(t) for t in ROW[1:-1].split(", ")]


TEXTS = [
    f"a: {ROW}\n", f"a: [{ROW},\n    {ROW}]\nb: 1\n", f"{{a: {ROW}, b: 2}}", f"- {ROW}\n- {ROW}\n",
    f"a: &x {ROW}\nb: *x\n", f"a: [{ROW}, [], [[]], {ROW}]\n", f"a: {ROW}\r\nb: 2\r\n",
    json.dumps({"a": NUMBERS, "b": [NUMBERS]}), f"a: [{ROW},\n {ROW}]  # c\nb: [{ROW}, 7]\n",
    # where the list is not what it seems, or not of the strict form: the events decide
    f"a: '{ROW}'\n", f"a: # {ROW}\n  3\n", f"a: |\n  {ROW}\n", f"a: x{ROW}\n", f"a: {ROW[:-1]}, 1,]\n",
    f"a: {ROW[:-1]}, 010, .5, +1]\n", f"a: {ROW}x\n", f"a: {ROW}\n  b: 1\n", f"{ROW}: 1\n",
    f"a: !!str {ROW}\n", f"a: [{ROW[:-1]}, 1{'0' * 350}]]\n", f"a: [{ROW}\n", f"a: {ROW}\nb: [1, 2\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_large_inline_lists_read_fast_mean_what_the_events_say(text, monkeypatch):
    """Large flow lists of numbers are read from the raw text (fastflow); values, errors and
    every element's place are the same as when every number is a YAML event."""
    paths = [("a", 0), ("a", 299), ("a", 1, 5), ("a", 3, 0, 7), ("b",), ("b", 0, 3), ("b", 1)]
    read = []
    monkeypatch.setattr(fastflow.json, "loads", lambda t, loads=json.loads: read.append(loads(t)) or read[-1])
    fast, events = _both_ways(text, monkeypatch, paths)
    assert fast == events
    k = TEXTS.index(text)
    assert bool(read) == (k < 9 or k == len(TEXTS) - 1)  # which were read fast (the last fails after)


def test_a_fast_list_holds_the_numbers_written():
    got = read_yaml(f"a: {ROW}\n", Source(file="c.yaml"), 1000)["a"]
    assert got == NUMBERS and [type(v) for v in got] == [type(v) for v in NUMBERS]
    assert got[0] == -0.15025 and got[1] == -149 and type(got[1]) is int


def test_fast_lists_keep_their_places_over_several_lines(monkeypatch):
    rows = ",\n  ".join(ROW for _ in range(4))
    text = f"# c\nx: 1\ninputs: [{rows}]\nlabels: [\n{', '.join(['2'] * 300)}]\nz: [[], [{ROW}]]\n"
    assert set(fastflow.prescan(text)[1]) == {(3, 9), (7, 9), (9, 4)}  # three lists read fast
    fast, events = _both_ways(text, monkeypatch, [("inputs", 3, 299), ("inputs", 2, 17), ("labels", 299),
                                                   ("z", 1, 0, 5), ("z", 0), ("inputs", 4)])
    assert fast == events
    before_17 = len(", ".join(ROW[1:-1].split(", ")[:17])) + 2  # characters before item 17, after `[`
    assert fast[1][:3] == [(6, len(ROW) - 1), (5, 2 + 1 + before_17 + 1), (8, 898)]


def test_a_bad_number_in_a_fast_list_is_located():
    row = "[" + ", ".join(["1"] * 300) + "]"
    text = f"inputs: [{row},\n  {row[:-2]}1e400]]\n" + BASE.split("\n", 1)[1]  # row: 900 characters
    assert err(text, max_elements=10**6).startswith(
        "c.yaml:2:901: inputs[1][299]: contains inf at index [1, 299]")


def test_twelve_million_inline_numbers_are_refused_from_the_count(monkeypatch):
    """23 MiB of `1,`: refused by the default limit, at the number that goes over, named by key,
    without converting a single number (36 s before; bench/config_load.py times it)."""
    row = "[" + ",".join(["1"] * 1000) + "]"
    text = f"inputs: [{','.join([row] * 12_000)}]\n" + BASE.split("\n", 1)[1]
    monkeypatch.setattr(fastflow.json, "loads", _never)
    # the 10,100,001st value (2 before the list: the mapping and the key `inputs`): the list's
    # 10,099,999th, after its `[` and 10,089 rows of 1001 (a `[`, 1000 numbers), row 10,089's
    # 908th number: column 9 + 1 + 10,089·2002 + 1 + 907·2
    assert err(text) == ("c.yaml:1:20200003: inputs: the YAML holds more than 10,100,000 values (the limit of "
                         "10,000,000 array elements, plus 100,000 for keys and settings); raise --max-elements "
                         "if this is intended")


def _block(n: int, value: str = "1.5") -> str:
    return "seed: 0\ninputs:\n" + f"- {value}\n" * n + "labels: [0]\n"


def test_a_huge_block_list_is_refused_from_a_count_where_the_events_would_refuse_it(monkeypatch):
    """150,000 numbers as a block list under --max-elements 1000 (a budget of 101,000 values):
    refused before any YAML event, with the key and words of the event reader's own refusal
    (which took 70 s and 3 GB for 12,000,000 of them). The count is of numbers only, so it is
    refused only where the events (which count keys and lists too) refuse as well; its place is
    the 101,001st number: the seed's 0, then list item 101,000 on line 2 + 101,000."""
    text = _block(150_000)
    fast = err(text, max_elements=1000)
    monkeypatch.setattr(fastflow, "numbers_beyond", lambda text, budget: None)  # the events alone
    events = err(text, max_elements=1000)
    assert fast.startswith("c.yaml:101002:3: inputs: the YAML holds more than 101,000 values")
    assert events.startswith("c.yaml:100998:3: ") and events.split(": ", 1)[1] == fast.split(": ", 1)[1]


def test_numbers_in_exponent_form_are_counted_once():
    """`-1.5e-08` is one number (its `-` and `e` do not start new ones): 100,000 of them stay
    within a budget of 101,000 and load."""
    text = _block(100_000, "-1.5e-08")
    assert fastflow.numbers_beyond(text, 101_000) is None
    assert len(read_yaml(text, Source(file="c.yaml"), 1000)["inputs"]) == 100_000

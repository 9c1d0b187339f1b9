"""`gradverify init`: a commented starter config with random weights that passes `check`."""
from __future__ import annotations

from itertools import pairwise

from .build import ACTIVATIONS, LOSSES
from .config import DEFAULT_MAX_ELEMENTS, is_custom, parse
from .errors import GradverifyError


def starter(layers: list[int], activation: str = "relu", loss: str = "softmax_cross_entropy",
            rows: int = 8, seed: int = 0) -> str:
    """The YAML text. layers: widths from the input's to the output's, e.g. [4, 16, 3]."""
    _check_options(layers, activation, loss, rows)
    text = _text(layers, activation, loss, rows, seed)
    try:  # the same rules as `gradverify check`: what init writes, check accepts
        parse(text, file="<starter>")
    except GradverifyError as e:  # pragma: no cover - _check_options should have said it
        raise GradverifyError(f"these options make a config that check refuses: {e}") from None
    return text


def _check_options(layers: list[int], activation: str, loss: str, rows: int) -> None:
    if len(layers) < 2 or any(w < 1 for w in layers):
        raise GradverifyError("--layers takes at least two positive widths, e.g. 4,16,3")
    if activation not in ACTIVATIONS:
        raise GradverifyError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if loss not in LOSSES:
        raise GradverifyError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    sizes = [("--rows × the input width", rows * layers[0])]
    sizes += [(f"layer {i}'s weights ({d}×{h})", d * h) for i, (d, h) in enumerate(pairwise(layers), 1)]
    if loss == "mse":
        sizes.append(("--rows × the output width (the targets)", rows * layers[-1]))
    for what, n in sizes:
        if n > DEFAULT_MAX_ELEMENTS:
            raise GradverifyError(f"{what} would have {n:,} elements, more than the {DEFAULT_MAX_ELEMENTS:,} "
                                  "an array may have")
    total = sum(n for _, n in sizes) + sum(layers[1:])
    if total > DEFAULT_MAX_ELEMENTS:
        raise GradverifyError(f"the arrays would have {total:,} elements together, more than the "
                              f"{DEFAULT_MAX_ELEMENTS:,} a config may have: choose smaller --layers or --rows")


def _text(layers: list[int], activation: str, loss: str, rows: int, seed: int) -> str:
    widths = " → ".join(map(str, layers))
    out = [
        f"# gradverify starter config: a {widths} network, {activation} hidden layers, {loss}.",
        "# Check it:            gradverify check gradverify.yaml",
        "# One node in detail:  gradverify node l1_lin --config gradverify.yaml",
        "# Editor completion:   gradverify schema > gradverify.schema.json, then keep the next line",
        "# yaml-language-server: $schema=gradverify.schema.json",
        f"seed: {seed}                    # seeds every generated array and the labels",
        f"inputs: {{shape: [{rows}, {layers[0]}], init: normal, std: 1.0}}   "
        f"# x: {rows} rows of {layers[0]} features",
    ]
    n_out = layers[-1]
    if loss == "mse":
        out.append(f"targets: {{shape: [{rows}, {n_out}], init: normal, std: 1.0}}   # what the output should be")
    else:
        out.append(f"labels: {{classes: {n_out}}}      # a random class per row; or your own list, e.g. [0, 2, …]")
    out += ["regularization: 0.001        # L2: 0.001 · Σ p² over every weight and bias (loss_reg)",
            "layers:"]
    for i, (d, h) in enumerate(pairwise(layers), 1):
        last = i == len(layers) - 1
        std = round(1.0 / d ** 0.5, 3)
        out.append(f"  - weights: {{shape: [{d}, {h}], init: normal, std: {std}}}   # w{i}: {d}×{h}")
        out.append(f"    bias: {{shape: [{h}], init: normal, std: 0.1}}           # b{i}")
        if not last:
            out.append(f"    activation: {activation}" + " " * max(1, 33 - len(activation)) + f"# l{i}_{activation}")
            if activation == "leaky_relu":
                out.append("    alpha: 0.01")
        elif loss == "cross_entropy":
            out.append("    activation: softmax                    # cross_entropy takes probabilities")
        else:
            out.append("    # no activation: the logits go to the loss")
    if loss == "softmax_cross_entropy":
        out.append("loss: softmax_cross_entropy     # nodes: exps, sexps, divexps, softmax, neg_log, loss_data")
    else:
        out.append(f"loss: {loss}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# --conv: a CNN starter


def parse_conv(spec: str) -> list[tuple[int, int]]:
    """`8:3` or `8:3,16:3`: (filters, kernel side) per conv block."""
    blocks = []
    for part in spec.split(","):
        try:
            filters, kernel = (int(v) for v in part.split(":"))
        except ValueError:
            raise GradverifyError(f"--conv {spec!r}: expected FILTERS:KERNEL blocks, e.g. 8:3 or 8:3,16:3") from None
        if filters < 1 or kernel < 1:
            raise GradverifyError(f"--conv {spec!r}: filters and kernel must be ≥ 1")
        blocks.append((filters, kernel))
    return blocks


def conv_starter(blocks: list[tuple[int, int]], image: tuple[int, int, int], classes: int,
                 rows: int = 4, seed: int = 0) -> str:
    """A CNN: rows images C×H×W → per block conv (pad kernel // 2, no bias) → spatial batchnorm +
    relu, then a 2×2 max pool → affine to `classes` → softmax cross-entropy."""
    c, h, w = image
    if min(c, h, w, classes, rows) < 1:
        raise GradverifyError("--image sides, the classes and --rows must be ≥ 1")
    out = [f"# gradverify starter config: a CNN on {rows} images {c}×{h}×{w}, {classes} classes.",
           "# Check it:  gradverify check gradverify.yaml   (the layer types: docs/layers.md)",
           f"seed: {seed}", f"inputs: {{shape: [{rows}, {c}, {h}, {w}], init: normal, std: 1.0}}",
           f"labels: {{classes: {classes}}}", "layers:"]
    i = 0
    for filters, kernel in blocks:
        pad = kernel // 2
        h, w = h + 2 * pad - kernel + 1, w + 2 * pad - kernel + 1  # ≥ the input's: the padding fits it
        std = round((2.0 / (c * kernel * kernel)) ** 0.5, 3)
        out += [f"  - {{type: conv, filters: {filters}, kernel: {kernel}, pad: {pad}, weights: {{init: normal, "
                f"std: {std}}}}}   # w{i + 1}, l{i + 1}_conv: {filters}×{h}×{w}",
                f"  - {{type: batchnorm, activation: relu}}   # gamma{i + 2}, beta{i + 2}, l{i + 2}_bn, l{i + 2}_relu"]
        c, i = filters, i + 2
    if h >= 2 and w >= 2:
        out.append(f"  - {{type: max_pool, size: 2}}   # l{i + 1}_pool: {c}×{h // 2}×{w // 2}")
        h, w, i = h // 2, w // 2, i + 1
    d = c * h * w
    out += [f"  - {{weights: {{shape: [{d}, {classes}], init: normal, std: {round(1 / d ** 0.5, 3)}}}, "
            f"bias: {{shape: [{classes}], init: zeros}}}}   # l{i + 1}_flat, w{i + 1}, b{i + 1}, l{i + 1}_lin",
            "loss: softmax_cross_entropy"]
    return _parsed("\n".join(out) + "\n")


def _parsed(text: str) -> str:
    """What init writes, check accepts (the same rules)."""
    try:
        parse(text, file="<starter>")
    except GradverifyError as e:
        raise GradverifyError(f"these options make a config that check refuses: {e}") from None
    return text


# ---------------------------------------------------------------------------------------------
# --op file.py:name: one custom op, checked alone under a projection loss

#: cs231n's ops (the stem of name_forward): (differentiable inputs with shapes and inits, attrs)
KNOWN_OPS: dict[str, tuple[list[tuple[str, str]], str]] = {
    "affine": ([("x", "[4, 6]"), ("w", "[6, 5]"), ("b", "[5]")], ""),
    "relu": ([("x", "[4, 5]")], ""), "sigmoid": ([("x", "[4, 5]")], ""), "tanh": ([("x", "[4, 5]")], ""),
    "batchnorm": ([("x", "[6, 5]"), ("gamma", "[5]"), ("beta", "[5]")], "{bn_param: {mode: train}}"),
    "layernorm": ([("x", "[6, 5]"), ("gamma", "[5]"), ("beta", "[5]")], "{ln_param: {}}"),
    "dropout": ([("x", "[6, 5]")], "{dropout_param: {p: 0.5, mode: train, seed: 0}}"),
    "conv": ([("x", "[2, 3, 5, 5]"), ("w", "[4, 3, 3, 3]"), ("b", "[4]")], "{conv_param: {stride: 1, pad: 1}}"),
    "max_pool": ([("x", "[2, 3, 4, 4]")], "{pool_param: {pool_height: 2, pool_width: 2, stride: 2}}"),
    "spatial_batchnorm": ([("x", "[2, 3, 4, 4]"), ("gamma", "[3]"), ("beta", "[3]")], "{bn_param: {mode: train}}"),
}


def is_custom_ref(ref: str) -> bool:
    return is_custom(ref)


def _stem(name: str) -> str:
    """conv_forward_naive -> conv, affine -> affine."""
    return name.replace("_forward", "").replace("_backward", "").replace("_naive", "").replace("_fast", "")


def _signature(source: str, forward: str) -> list[str] | None:
    """The parameter names of `def forward(...)` in the file's text (read, never run), or None."""
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == forward:
            return [a.arg for a in node.args.posonlyargs + node.args.args]
    return None


def op_starter(ref: str, source: str | None, seed: int = 0) -> str:
    """A graph-form config checking the op `ref` (file.py:name) alone: its inputs generated, its
    output node `out` projected onto a fixed random direction (`loss: out`). Inputs and attrs
    come from cs231n's signatures for its ops, else from the forward's parameters (each 4×5; a
    parameter named *_param becomes an empty attrs dict)."""
    from .custom import pair_names
    file, name = ref.split(":", 1)
    forward = pair_names(name)[0]
    params = _signature(source, forward) if source is not None else None
    if params is None:
        raise GradverifyError(f"--op {ref}: {file} has no function {forward} (next to the config)")
    inputs, attrs = KNOWN_OPS.get(_stem(name), ([(p, "[4, 5]") for p in params if not p.endswith("_param")], ""))
    if not attrs and any(p.endswith("_param") for p in params):
        attrs = "{" + ", ".join(f"{p}: {{}}" for p in params if p.endswith("_param")) + "}"
    inits = {"gamma": "ones", "beta": "zeros"}
    out = [f"# gradverify starter config: checks {forward} and its backward in {file} alone.",
           "# The output `out` is not a scalar: `loss: out` checks the projection Σ out · R onto a",
           "# fixed random R, so every input's gradient and out's own are compared.",
           "# Check it:  gradverify check <this file>   (change the shapes to your op's)",
           f"seed: {seed}", "values:"]
    out += [f"  {n}: {{shape: {shape}, init: {inits.get(n, 'normal')}, std: 1.0}}" for n, shape in inputs]
    out += [f"inputs: [{inputs[0][0]}]", "graph:",
            f"  - {{name: out, op: \"{ref}\", inputs: [{', '.join(n for n, _ in inputs)}]"
            + (f", attrs: {attrs}}}" if attrs else "}"), "loss: out"]
    return _parsed("\n".join(out) + "\n")

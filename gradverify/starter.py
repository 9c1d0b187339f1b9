"""`gradverify init`: a commented starter config with random weights that passes `check`."""
from __future__ import annotations

from itertools import pairwise

from .build import ACTIVATIONS, LOSSES
from .config import DEFAULT_MAX_ELEMENTS, parse
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

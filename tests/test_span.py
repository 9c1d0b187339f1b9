"""Span changes (gradverify/span.py): a batchnorm's copies as shared directions plus sparse
parts, pushed through relu, max pooling and flatten to a matmul. Every push is compared with the
dense copies run through the plain forward (values and the kinks they cross), on random networks
and on planted ties and zeros; the engine's estimates with spans against the same check without."""

import numpy as np
import pytest

from gradverify import delta, ops
from gradverify.numeric.prober import crossings
from gradverify.span import Span


def _dense_change(op, d_dense, xs):
    """The copies' change of op's output the slow way: plain forward of the dense copies."""
    return op.forward(d_dense, *xs[1:]) - op.forward(*xs)


def _random_span(rng, shape, k, own_kind, fixes=3):
    """A Span of k complex-step copies over a node of core shape (N, C, H, W) or (N, D): two
    random shared directions, one group per channel (or per block of columns), own changes
    (one element per copy, a sparse patch in one row per copy with repeated positions and
    padding, or none) and fixes (positions may repeat)."""
    n, row = shape[0], int(np.prod(shape[1:]))
    chans = shape[1] if len(shape) == 4 else 4
    groups = np.repeat(np.arange(chans), row // chans)
    basis = rng.normal(size=(2,) + shape)
    coef = 1e-20j * rng.normal(size=(k, 2, chans))
    if own_kind == "elem":
        own_pos = rng.integers(0, n * row, size=(k, 1))
    elif own_kind == "patch":
        own_pos = rng.integers(0, n, size=(k, 1)) * row + rng.integers(0, row, size=(k, 7))
        own_pos[:, -1] = own_pos[:, 0]  # a repeated position adds up
    else:
        own_pos = np.zeros((k, 1), np.intp)
    own = 1e-20j * rng.normal(size=own_pos.shape)
    if own_kind == "patch":
        own[0, 3:] = 0  # padding: value 0
    if own_kind is None:
        own[:] = 0
    pos = rng.integers(0, n * row, size=fixes)
    pos[-1] = pos[0]
    return Span(basis, groups, coef, own_pos, own, pos, 1e-20j * rng.normal(size=(k, fixes)), shape)


@pytest.mark.parametrize("own_kind", ["elem", "patch", None])
def test_at_and_materialize_agree(own_kind, rng):
    """A Span's value at chosen positions (what pooling reads near ties) is its dense copies'."""
    s = _random_span(rng, (3, 2, 4, 4), 5, own_kind)
    dense = s.materialize().vals.reshape(5, -1)
    q = rng.integers(0, dense.shape[1], size=40)
    np.testing.assert_allclose(s.at(q), dense[:, q], rtol=1e-14, atol=1e-40)
    # and the dense copies by hand: Σ_j coef[b, j, channel] basis_j + own changes + fixes
    want = np.einsum("bjc,jnchw->bnchw", s.coef, s.basis).reshape(5, -1)
    for b in range(5):
        for p, v in zip(s.own_pos[b], s.own[b]):
            want[b, p] += v
    for i, p in enumerate(s.pos):
        want[:, p] += s.fix[:, i]
    np.testing.assert_allclose(dense, want, rtol=1e-12, atol=1e-40)


def _tied(rng, shape):
    """A relu output with pooling ties: zeros (relu's off side, tied in a window) and a planted
    tie between two positive entries."""
    x = np.maximum(rng.normal(size=shape), 0)
    x[..., 0, 1] = x[..., 0, 0] = 0.7
    return x[None]


def _through(op, s, x, rng):
    """Push Span s through op at plain input x; compare with the dense copies: values, and the
    crossings reported against the dense path's. Returns the output (a Span or a Delta)."""
    out = op.forward(x)
    seen = []
    res = op.push_span(0, s, [x], out, lambda dist, plain: seen.append(crossings(dist, plain, 1, s.k, "complex")))
    assert res is not None, "expected the span rule"
    dense = s.materialize().dense(x)
    want = op.forward(dense) - out
    got = res.materialize().dense(np.zeros_like(out)) if isinstance(res, Span) else res.dense(np.zeros_like(out))
    np.testing.assert_allclose(got.imag, want.imag, rtol=1e-12, atol=1e-34)
    if isinstance(res, Span) and res.silent is not None:  # what it calls silent is unchanged
        assert not np.any(want.reshape(s.k, -1)[:, res.silent])
    if op.kinked:
        plain_dist = op.kink_distance(x)
        assert seen and seen[0].tolist() == crossings(op.kink_distance(dense), plain_dist, 1, s.k, "complex").tolist()
    return res


@pytest.mark.parametrize("real_part", [0.0, 1e-30])
@pytest.mark.parametrize("own_kind", ["elem", "patch", None])
def test_relu_pool_flatten_matmul_equal_the_dense_copies(own_kind, real_part, rng):
    """Each op's span rule against its plain forward on the dense copies, with pooling windows
    tied at zeros and at a positive value (recomputed as forward does, and their crossings
    counted as the dense path counts them). Real parts of rounding size break the ties at 0
    otherwise than the plain pass: those windows' maxima are other entries (the fixes)."""
    shape = (3, 2, 4, 6)
    s = _random_span(rng, shape, 6, own_kind)
    s.coef += real_part * rng.normal(size=s.coef.shape)
    s.real_reach = s.reach()
    s.fix[:, :] = 0  # fixes arise from pooling; relu sees none in a network, but may
    s.fix[1, 0] = 1e-20j
    x = rng.normal(size=(1,) + shape)
    relu_out = _through(ops.ReLU(), s, x, rng)
    tied = _tied(rng, shape)
    pooled = _through(ops.MaxPool2d(size=2), s, tied, rng)
    assert isinstance(relu_out, Span) and isinstance(pooled, Span)
    flat = _through(ops.Flatten(), pooled, ops.MaxPool2d(size=2).forward(tied), rng)
    w = rng.normal(size=(1, flat.shape[1], 5))
    mm = ops.MatMul()
    xin = ops.Flatten().forward(ops.MaxPool2d(size=2).forward(tied))
    res = mm.push_span(0, flat, [xin, w], mm.forward(xin, w), None)
    want = mm.forward(flat.materialize().dense(xin), w) - mm.forward(xin, w)
    np.testing.assert_allclose(res.dense(np.zeros_like(want[:1])).imag, want.imag, rtol=1e-11, atol=1e-33)


@pytest.mark.parametrize("own_kind", ["elem", "patch"])
def test_relu_then_pool_skips_only_windows_nobody_moves(own_kind, rng):
    """After relu, its off side is silent (every copy's change exactly 0): pooling does not
    recompute a window tied among zeros, and still ends where the dense copies end, counting
    the same crossings (windows tied at a positive value are moved, and recomputed)."""
    shape = (2, 2, 4, 6)
    s = _random_span(rng, shape, 5, own_kind, fixes=2)
    s.real_reach = s.reach()
    pre = rng.normal(size=(1,) + shape)
    pre[0, :, :, :2, :2] = -1.0  # windows wholly on relu's off side: tied at 0
    pre[0, 0, 1, 2:, 2:4] = 0.9  # a window tied at 0.9 that the copies move
    relu, pool = ops.ReLU(), ops.MaxPool2d(size=2)
    mid = _through(relu, s, pre, rng)
    assert mid.silent is not None and mid.silent.reshape(shape)[:, :, :2, :2].all()
    x = relu.forward(pre)
    out = _through(pool, mid, x, rng)
    dense = relu.forward(s.materialize().dense(pre))
    np.testing.assert_allclose(out.materialize().dense(pool.forward(x)).imag, pool.forward(dense).imag,
                               rtol=1e-12, atol=1e-34)
    assert out.silent.reshape(out.shape)[:, :, 0, 0].all()


def _silence(s, positions):
    """Make every copy's change exactly 0 at flat positions, and say so (Span.silent)."""
    s.basis.reshape(s.basis.shape[0], -1)[:, positions] = 0
    s.own[np.isin(s.own_pos, positions)] = 0
    s.fix[:, np.isin(s.pos, positions)] = 0
    s.silent = np.zeros(s.basis[0].size, bool)
    s.silent[positions] = True


@pytest.mark.parametrize("own_kind", ["elem", "patch"])
def test_a_window_tied_between_silent_and_moved_entries_is_recomputed(own_kind, rng):
    """A window tied at 0 whose first (plain maximum) entry is silent and whose second is moved:
    it is recomputed (the moved entry may take the maximum and crosses the tie), and its output
    is not silent; a window whose entries are all silent is left alone."""
    shape = (2, 2, 4, 6)
    s = _random_span(rng, shape, 5, own_kind, fixes=2)
    s.coef += 1e-30 * rng.normal(size=s.coef.shape)  # real parts that break ties at 0
    x = rng.uniform(1, 2, size=(1,) + shape)
    x[0, :, :, :2, :2] = [[0.0, 0.0], [-1.0, -1.0]]  # the first window of every channel: tied at 0 …
    idx = np.arange(x[0].size).reshape(shape)
    silent = np.concatenate([idx[:, :, 0, 0].ravel(), idx[:, :, 2:, :2].ravel()])  # … its (0, 0) silent
    x[0, :, :, 2:, :2] = 0.5  # and windows tied at 0.5, all silent
    _silence(s, silent)
    s.real_reach = s.reach()
    out = _through(ops.MaxPool2d(size=2), s, x, rng)
    assert not out.silent.reshape(out.shape)[:, :, 0, 0].any()
    assert out.silent.reshape(out.shape)[:, :, 1, 0].all()


def test_a_moved_tie_is_a_crossing_as_in_the_dense_path():
    """Copies that move one of two tied window entries by the complex step cross a kink (the
    tie), counted as the dense copies count it: every entry whose distance is 0 and moved."""
    x = np.array([[0.7, 0.7, 0.1, 0.0, 1.0, 2.0, 3.0, 4.0],
                  [0.2, 0.3, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0],
                  [0.5, 0.0, -1., -1., 1.5, 2.5, 3.5, 4.5],
                  [0.1, 0.4, -1., -1., 5.5, 6.5, 7.5, 8.5]])[None, None, None]
    shape = (1, 1, 4, 8)  # 8 windows, 2 of them tied: few enough for the rule
    s = Span(np.zeros((1,) + shape), np.zeros(32, np.intp), np.zeros((3, 1, 1), complex),
             np.array([[1], [9], [18]]), np.full((3, 1), 1e-20j), np.zeros(0, np.intp), np.zeros((3, 0), complex),
             shape)
    seen = []
    op = ops.MaxPool2d(size=2)
    op.push_span(0, s, [x], op.forward(x), lambda dist, plain: seen.append(crossings(dist, plain, 1, 3, "complex")))
    # (0, 1) moves off its tie with (0, 0): both distances 0 and moved; (1, 1) is below its
    # window's maximum; (2, 2) moves one of four tied entries: all four
    assert seen[0].tolist() == [2, 0, 4]
    dense = crossings(op.kink_distance(s.materialize().dense(x)), op.kink_distance(x), 1, 3, "complex")
    assert dense.tolist() == [2, 0, 4]


def test_near_kinks_and_overlapping_windows_fall_back(rng):
    """Where the rule does not hold (a relu input at 0, overlapping windows, a real step), the
    ops decline and the copies are materialised."""
    shape = (2, 2, 4, 4)
    s = _random_span(rng, shape, 3, "elem")
    x = rng.normal(size=(1,) + shape)
    x[0, 1, 1, 2, 2] = 0.0
    assert ops.ReLU().push_span(0, s, [x], ops.ReLU().forward(x), None) is None
    assert ops.MaxPool2d(size=2, stride=1).push_span(0, s, [x], ops.MaxPool2d(size=2, stride=1).forward(x), None) is None
    bn, xs = ops.SpatialBatchNorm(), [rng.normal(size=(1,) + shape), rng.normal(size=(1, 2)), rng.normal(size=(1, 2))]
    real = delta.elements(np.array([3, 7]), np.array([1e-6, -1e-6]), shape)
    assert bn.push_span(0, real, xs, bn.forward(*xs), None) is None


def test_own_points_hold_a_changed_row_or_element(rng):
    """A changed row as each copy's nonzero entries (a convolved pixel's patch), padded with
    zeros: written back densely, the row itself; an element as one point."""
    from gradverify.span import own_points
    shape = (3, 2, 4, 4)
    vals = 1e-20j * rng.normal(size=(4,) + shape[1:]) * (rng.random(size=(4,) + shape[1:]) < 0.2)
    vals[2] = 0  # a copy with no change at all
    d = delta.Delta.row(np.array([0, 2, 1, 2]), vals, shape)
    pos, own = own_points(d)
    dense = np.zeros((4, 96), complex)
    np.add.at(dense, (np.arange(4)[:, None], pos), own)
    np.testing.assert_array_equal(dense, d.dense(np.zeros((1,) + shape)).reshape(4, -1))
    assert pos.shape[1] == max(int((vals[b] != 0).sum()) for b in range(4))
    e = delta.elements(np.array([5, 77]), np.array([1e-20j, 2e-20j]), shape)
    pos, own = own_points(e)
    assert pos.tolist() == [[5], [77]] and own.tolist() == [[1e-20j], [2e-20j]]


@pytest.mark.parametrize("kind", ["elem", "row", "patch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batchnorm_span_equals_its_dense_push_and_forward(kind, dtype, rng):
    """The batchnorm's span (xhat and 1 per channel, the pixel's or image's own terms)
    holds the copies its dense push gives and its plain forward gives."""
    shape = (3, 2, 4, 4)
    bn = ops.SpatialBatchNorm()
    xs = [rng.normal(size=(1,) + s).astype(dtype) for s in (shape, (2,), (2,))]
    if kind == "elem":
        d = delta.elements(rng.choice(96, 5, replace=False), 1e-20j * rng.normal(size=5), shape)
    else:
        vals = 1e-20j * rng.normal(size=(4, 2, 4, 4))
        if kind == "patch":  # what conv's push gives for a pixel: a few entries per filter
            vals *= rng.random(size=vals.shape) < 0.15
        d = delta.Delta.row(rng.integers(0, 3, size=4), vals, shape)
    out = bn.forward(*xs)
    s = bn.push_span(0, d, xs, out, None)
    assert isinstance(s, Span) and s.basis.shape[0] == 2
    got = s.materialize().dense(np.zeros_like(out))
    np.testing.assert_allclose(got.imag, delta.push(bn, 0, d, xs, out).dense(np.zeros_like(out)).imag, rtol=1e-12)
    np.testing.assert_allclose(got.imag, _dense_change(bn, d.dense(xs[0]), xs).imag,
                               rtol=1e-5 if dtype == np.float32 else 1e-9, atol=1e-30)


def test_the_cnn_takes_the_span_path_and_ends_at_the_matmul():
    """configs/cnn.yaml: the batchnorm's change is a Span through relu, pooling and flatten,
    ended by the affine layer's matmul; nothing else makes one."""
    from pathlib import Path

    from gradverify import checker, config
    run = checker.prepare(config.load(Path(__file__).resolve().parent.parent / "configs" / "cnn.yaml"))
    g = run.graph
    assert [n for n in g.nodes if g.nodes[n].op is not None and g.spans_onward(n)] == \
        ["l1_conv", "l2_bn", "l2_relu", "l3_pool", "l4_flat"]
    d = delta.elements(np.array([5, 700]), np.array([1e-20j, 1e-20j]), run.values["l1_conv"].shape[1:])
    spans = []
    orig = g._push_span

    def spy(name, *args):
        res = orig(name, *args)
        spans.append((name, type(res).__name__))
        return res

    g._push_span = spy
    g.propagate(run.values, {"l1_conv": d})
    assert ("l2_bn", "Span") in spans and ("l4_flat", "Span") in spans and ("w4_out", "Delta") in spans
    spans.clear()
    g.propagate(run.values, {"x": delta.elements(np.array([3, 400]), np.array([1e-20j, 1e-20j]), (8, 3, 16, 16))})
    assert spans[:2] == [("l1_conv", "Span"), ("l2_bn", "Span")]


@pytest.mark.parametrize("stride,pad", [(1, 1), (2, 1), (1, 0), (2, 2)])
def test_conv_patches_are_its_push(stride, pad, rng):
    """A pixel's patch as a Span of own changes holds the row conv's push gives (and the dense
    copies' forward), every offset within the output, for strides and paddings that leave some
    pixels in no window; materialised, it is that row again."""
    op = ops.Conv2d(stride=stride, pad=pad)
    xs = [rng.normal(size=(1, 2, 3, 7, 6)), rng.normal(size=(1, 4, 3, 3, 3))]
    out = op.forward(*xs)
    d = delta.elements(rng.choice(252, 9, replace=False), 1e-20j * rng.normal(size=9), (2, 3, 7, 6))
    s = op.push_span(0, d, xs, out, None)
    assert isinstance(s, Span) and s.basis.shape[0] == 0
    m = s.materialize()
    assert m.kind == "row"
    np.testing.assert_array_equal(m.dense(np.zeros_like(out)), delta.push(op, 0, d, xs, out).dense(np.zeros_like(out)))
    np.testing.assert_allclose(m.dense(np.zeros_like(out)).imag, (op.forward(d.dense(xs[0]), xs[1]) - out).imag,
                               rtol=1e-12, atol=1e-34)


@pytest.mark.parametrize("config_name", ["cnn.yaml", "cnn_graph.yaml"])
def test_checks_with_spans_equal_checks_without(config_name, monkeypatch):
    """The whole check with span pushes against the same check with them off: every element's
    estimate equal to rounding, every status the same."""
    from pathlib import Path

    from gradverify import checker, config, graph
    cfg = config.load(Path(__file__).resolve().parent.parent / "configs" / config_name)
    nodes = ("x", "l1_conv") if config_name == "cnn.yaml" else None
    settings = checker.Settings(nodes=nodes) if nodes else checker.Settings()
    with_spans = checker.run(cfg, settings)
    monkeypatch.setattr(graph.Graph, "_push_span", lambda self, *args: None)
    without = checker.run(cfg, settings)
    for a, b in zip(with_spans.nodes, without.nodes):
        assert a.statuses.tolist() == b.statuses.tolist(), a.name
        np.testing.assert_allclose(a.numeric, b.numeric, rtol=1e-10, atol=1e-12 * max(np.abs(b.analytic).max(), 1e-300))


def test_conv_patches_with_real_parts_are_not_a_span(rng):
    """A change with real parts beyond rounding (a large complex step through a nonlinear op
    before the conv) may move a relu input across 0 or a maximum past a tie: no Span, the
    dense pushes decide (as for a batchnorm's)."""
    op = ops.Conv2d(pad=1)
    xs = [rng.normal(size=(1, 2, 3, 5, 5)), rng.normal(size=(1, 4, 3, 3, 3))]
    out = op.forward(*xs)
    idx = np.array([3, 40])
    step = delta.elements(idx, np.array([1e-20j, 2e-20j]), (2, 3, 5, 5))
    assert isinstance(op.push_span(0, step, xs, out, None), Span)
    moved = delta.elements(idx, np.array([1e-7 + 1e-3j, 2e-20j]), (2, 3, 5, 5))
    assert op.push_span(0, moved, xs, out, None) is None

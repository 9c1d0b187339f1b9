"""The sparse pushes of the CNN ops (conv, batchnorm, pooling, relu): every push against the
dense copies run through the plain forward, with real and complex steps, and the kinks the pushed
windows report against the dense path's; the fast max_margin against a plain loop."""

import numpy as np
import pytest

from gradverify import ops


def one(a):
    """An array with the leading perturbation axis B = 1."""
    return np.asarray(a, dtype=float)[None]


# -- sparse pushes: the same copies as the dense forward, and the same kinks -----------------------

def _dense_change(op, slot, d, xs):
    """The copies' change of op's output computed the slow way: dense copies, plain forward."""
    args = list(xs)
    args[slot] = d.dense(xs[slot])
    return op.forward(*args) - op.forward(*xs)


def _elements(rng, shape, k, complex_=False):
    from gradverify import delta
    idx = rng.choice(int(np.prod(shape)), min(k, int(np.prod(shape))), replace=False)
    vals = rng.normal(size=len(idx)) * (1e-20j if complex_ else 0.3)
    return delta.elements(idx, vals, shape)


PUSH_CASES = [
    (ops.Conv2d(pad=1), 0, [(2, 3, 5, 5), (4, 3, 3, 3), (4,)]),
    (ops.Conv2d(stride=2), 0, [(2, 2, 6, 5), (3, 2, 2, 2)]),
    (ops.Conv2d(pad=1), 1, [(2, 3, 5, 5), (4, 3, 3, 3), (4,)]),
    (ops.Conv2d(stride=2, pad=1), 1, [(2, 2, 6, 5), (3, 2, 2, 2)]),
    (ops.Conv2d(pad=1), 2, [(2, 3, 5, 5), (4, 3, 3, 3), (4,)]),
    (ops.SpatialBatchNorm(), 0, [(3, 4, 3, 2), (4,), (4,)]),
    (ops.SpatialBatchNorm(), 1, [(3, 4, 3, 2), (4,), (4,)]),
    (ops.SpatialBatchNorm(), 2, [(3, 4, 3, 2), (4,), (4,)]),
    (ops.BatchNorm(), 0, [(5, 3), (3,), (3,)]),
    (ops.MaxPool2d(size=2), 0, [(2, 3, 5, 4)]),
    (ops.MaxPool2d(size=2, stride=3), 0, [(2, 2, 7, 7)]),
    (ops.AvgPool2d(size=2), 0, [(2, 3, 5, 4)]),
    (ops.AvgPool2d(size=2, stride=3), 0, [(2, 2, 7, 7)]),
]


@pytest.mark.parametrize("op,slot,shapes", PUSH_CASES, ids=[f"{op.label}-{s}" for op, s, _ in PUSH_CASES])
@pytest.mark.parametrize("complex_", [False, True])
def test_sparse_push_equals_the_dense_copies(op, slot, shapes, complex_, rng):
    from gradverify import delta
    xs = [rng.normal(size=(1,) + s) for s in shapes]
    d = _elements(rng, shapes[slot], 6, complex_)
    out = op.forward(*xs)
    seen = []
    res = delta.push(op, slot, d, xs, out, on_kink=lambda dist, plain: seen.append(dist))
    assert res is not None, "expected a sparse rule"
    want = _dense_change(op, slot, d, xs)
    np.testing.assert_allclose(res.dense(np.zeros_like(out)), want, rtol=1e-9, atol=1e-12)
    if complex_:
        np.testing.assert_allclose(res.dense(np.zeros_like(out)).imag, want.imag, rtol=1e-9, atol=1e-32)
    assert bool(seen) == op.kinked


def test_channel_change_through_pool_and_relu_equals_dense(rng):
    """A changed channel (what a batchnorm push gives) goes through relu and max pooling as one
    channel, with the same values as the dense copies."""
    from gradverify import delta
    x = rng.normal(size=(1, 2, 3, 4, 4))
    d = delta.Delta.col(np.array([0, 2, 2]), rng.normal(size=(3, 2, 4, 4)), (2, 3, 4, 4))
    for op in (ops.ReLU(), ops.MaxPool2d(size=2), ops.AvgPool2d(size=2)):
        out = op.forward(x)
        res = delta.push(op, 0, d, [x], out, on_kink=lambda dist, plain: None)
        assert res is not None and res.kind == "col"
        np.testing.assert_allclose(res.dense(np.zeros_like(out)), _dense_change(op, 0, d, [x]), atol=1e-12)


def test_changed_channel_through_flatten_is_a_block_of_every_row(rng):
    """A changed channel (a conv filter's weight moved, after batchnorm, relu and pooling)
    flattens to a block of columns in every row: the same values as flattening the dense copies."""
    from gradverify import delta
    x = rng.normal(size=(1, 2, 3, 2, 2))
    d = delta.Delta.col(np.array([2, 0]), rng.normal(size=(2, 2, 2, 2)) * 1e-20j, (2, 3, 2, 2))
    op = ops.Flatten()
    res = delta.push(op, 0, d, [x], op.forward(x))
    assert res is not None and res.kind == "full"
    np.testing.assert_array_equal(res.dense(op.forward(x)), op.forward(d.dense(x)))


def test_pooled_element_at_a_tie_is_seen_as_a_kink():
    """Perturbing one of two tied entries of a window by the complex step: the pushed window
    reports a distance 0 moved in its imaginary part (a crossing), as the dense path does."""
    from gradverify import delta
    from gradverify.numeric.prober import crossings
    x = one([[[[2.0, 2.0], [0.0, 1.0]]]])
    op = ops.MaxPool2d(size=2)
    d = delta.elements(np.array([1]), np.array([1e-20j]), (1, 1, 2, 2))
    hits = []
    delta.push(op, 0, d, [x], op.forward(x),
               on_kink=lambda dist, plain: hits.append(crossings(dist, plain, 1, 1, "complex")))
    dense = crossings(op.kink_distance(d.dense(x)), op.kink_distance(x), 1, 1, "complex")
    assert hits and hits[0].tolist() == dense.tolist() and dense[0] > 0


# -- the CNN's sparse paths (bench/cnn.py): a conv row through batchnorm, full changes through
#    relu and max pooling; each against the dense copies --------------------------------------

def _rows(rng, shape, k, complex_):
    from gradverify import delta
    vals = rng.normal(size=(k,) + shape[1:]) * (1e-20j if complex_ else 0.3)
    return delta.Delta.row(rng.integers(0, shape[0], k), vals, shape)


@pytest.mark.parametrize("op,shapes", [
    (ops.SpatialBatchNorm(), [(3, 4, 3, 2), (4,), (4,)]),
    (ops.SpatialBatchNorm(eps=0.0), [(2, 3, 4, 4), (3,), (3,)]),
    (ops.BatchNorm(), [(5, 3), (3,), (3,)]),
], ids=["spatial", "spatial-eps0", "batchnorm"])
@pytest.mark.parametrize("complex_", [False, True])
def test_batchnorm_pushes_a_changed_row_as_the_dense_copies_give(op, shapes, complex_, rng):
    """A changed image (what conv's push gives) moves every channel's statistics: the push gives
    all of out as a rescaling of the plain xhat, equal to renormalizing the dense copies."""
    from gradverify import delta
    xs = [rng.normal(size=(1,) + s) for s in shapes]
    d = _rows(rng, shapes[0], 5, complex_)
    res = delta.push(op, 0, d, xs, op.forward(*xs))
    assert res is not None and res.kind == "full"
    want = _dense_change(op, 0, d, xs)
    got = res.dense(np.zeros_like(op.forward(*xs)))
    np.testing.assert_allclose(got.real, want.real, rtol=1e-9, atol=1e-12)
    if complex_:  # the complex step's derivative: exact, not merely close
        np.testing.assert_allclose(got.imag, want.imag, rtol=1e-9, atol=1e-32)


@pytest.mark.parametrize("complex_", [False, True])
def test_conv_batchnorm_relu_pool_chain_equals_the_dense_forward(complex_, rng):
    """cnn.yaml's chain, perturbing input pixels: every op's push in turn (conv row → batchnorm
    full → relu full → max pool full) ends where the plain forward of the dense copies ends."""
    from gradverify import delta
    x = rng.normal(size=(1, 2, 3, 6, 6))
    w, gamma, beta = rng.normal(size=(1, 4, 3, 3, 3)), rng.normal(size=(1, 4)), rng.normal(size=(1, 4))
    chain = [(ops.Conv2d(pad=1), [w]), (ops.SpatialBatchNorm(), [gamma, beta]), (ops.ReLU(), []),
             (ops.MaxPool2d(size=2), [])]
    d = _elements(rng, (2, 3, 6, 6), 7, complex_)
    dense, plain, kinds = d.dense(x), x, []
    for op, rest in chain:
        out = op.forward(plain, *rest)
        d = delta.push(op, 0, d, [plain] + rest, out, on_kink=lambda dist, base: None)
        assert d is not None
        kinds.append(str(d.kind))
        dense, plain = op.forward(dense, *rest), out
    assert kinds == ["row", "full", "full", "full"]
    np.testing.assert_allclose(d.dense(plain), dense, rtol=1e-9, atol=1e-12)
    if complex_:
        np.testing.assert_allclose(d.dense(plain).imag, dense.imag, rtol=1e-9, atol=1e-32)


def test_full_change_through_relu_and_pool_reports_the_dense_kinks():
    """A full change's kink distances: the perturbed ones as the dense path computes them, the
    plain ones once (B = 1), so the crossings counted are the dense path's, ties included."""
    from gradverify import delta
    from gradverify.numeric.prober import crossings
    x = one([[[[2.0, 2.0, 0.5, -1.0], [0.0, 1.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0], [1.0, 3.0, 0.0, 2.0]]]])
    vals = np.zeros((3,) + x.shape[1:], dtype=complex)
    vals[0, 0, 0, 0, 1] = 1e-20j  # moves one of the tied 2s
    vals[1, 0, 0, 1, 2] = 1e-20j  # moves a relu input at 0, below its window's maximum
    vals[2, 0, 0, 2, 0] = 1e-20j  # moves a tied 3 of the third window
    d = delta.Delta.full(vals, x.shape[1:])
    expected = {"relu": [0, 1, 0], "max_pool2d": [2, 0, 2]}  # a tie: both entries at 0
    for op in (ops.ReLU(), ops.MaxPool2d(size=2)):
        hits: list = []
        res = delta.push(op, 0, d, [x], op.forward(x),
                         on_kink=lambda dist, plain, hits=hits: hits.append(crossings(dist, plain, 1, 3, "complex")))
        dense = crossings(op.kink_distance(d.dense(x)), op.kink_distance(x), 1, 3, "complex")
        assert res is not None and res.kind == "full" and hits
        assert hits[0].tolist() == dense.tolist() == expected[op.name]
        np.testing.assert_array_equal(res.dense(op.forward(x)), op.forward(d.dense(x)))


def _margin_by_loop(x, axis):
    """max_margin lane by lane in plain Python: the first maximum by the real part, the first
    runner-up among the others."""
    moved = np.moveaxis(x, axis, -1)
    out = np.empty_like(moved)
    for lane in np.ndindex(moved.shape[:-1]):
        v = moved[lane]
        reals = [e.real for e in v]
        first = reals.index(max(reals))
        others = [r if j != first else -np.inf for j, r in enumerate(reals)]
        second = others.index(max(others))
        out[lane] = [v[first] - v[second] if j == first else v[j] - v[first] for j in range(len(v))]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 4, 2, 4), (6, 2)])
def test_max_margin_matches_a_lane_by_lane_loop(shape, rng):
    """Small integers tie often: the fast max_margin (flat indices) against a Python loop, on
    every axis, real and complex, and the window maxima against np.argmax."""
    from gradverify.ops.pool import _max_and_margin, max_margin
    for _ in range(10):
        x = rng.integers(-2, 3, size=shape).astype(float)
        z = x + 1e-20j * rng.normal(size=shape)
        for axis in range(-1, len(shape)):
            np.testing.assert_array_equal(max_margin(x, axis), _margin_by_loop(x, axis))
            np.testing.assert_array_equal(max_margin(z, axis), _margin_by_loop(z, axis))
            top = _max_and_margin(z, axis)[0]
            want = np.take_along_axis(z, np.expand_dims(np.argmax(z.real, axis), axis), axis)
            np.testing.assert_array_equal(top, want)


@pytest.mark.parametrize("plain_dtype,step", [(np.float32, 1e-20j), (np.float32, 1e-3), (np.float64, 1e-3)])
def test_full_change_keeps_the_dense_copies_type(plain_dtype, step, rng):
    """A float32 network's copies through relu and max pooling: the pushed change has the type
    and the values the dense copies (x + Δ, numpy's promotion) give, NaN-free or not."""
    from gradverify import delta
    x = rng.normal(size=(1, 2, 3, 4, 4)).astype(plain_dtype)
    x[0, 0, 0, 0, :2] = 0.0  # relu kinks and a pooled tie among them
    vals = rng.normal(size=(3, 2, 3, 4, 4)) * step
    d = delta.Delta.full(vals, x.shape[1:])
    for op in (ops.ReLU(), ops.MaxPool2d(size=2)):
        out = op.forward(x)
        res = delta.push(op, 0, d, [x], out, on_kink=lambda dist, plain: None)
        want = op.forward(d.dense(x))
        assert res is not None and res.vals.dtype == (want - out).dtype
        np.testing.assert_allclose(res.dense(out), want, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(res.dense(out).imag, want.imag)  # the complex step: exact


@pytest.mark.parametrize("node", ["x", "l1_conv"])
@pytest.mark.parametrize("method", ["complex", "central"])
def test_cnn_estimates_through_the_pushes_equal_plain_forward_differences(node, method):
    """configs/cnn.yaml: the engine's estimates for input pixels and conv outputs (through the
    batchnorm, relu and pooling pushes) against central differences of the plain forward pass,
    recomputed node by node with no pushes, on a sample of elements. A wrong push would move
    the numeric side, and a correct gradient would then FAIL (or a wrong one pass)."""
    from pathlib import Path

    from gradverify import checker, config, numeric
    cfg = config.load(Path(__file__).resolve().parent.parent / "configs" / "cnn.yaml")
    run = checker.prepare(cfg)
    graph, values = run.graph, run.values
    idx = np.random.default_rng(7).choice(values[node][0].size, 12, replace=False)
    est = numeric.estimate(graph, values, node, method=method, indices=idx)

    def loss_with(new):  # every downstream node recomputed by its plain forward
        vals = dict(values, **{node: new})
        after = set(graph.downstream(node))
        for name in (n for n in graph.nodes if n in after):  # in the graph's order
            vals[name] = graph.nodes[name].fn.forward(*(vals[i] for i in graph.nodes[name].inputs))
        return float(np.real(vals[graph.loss]).reshape(-1)[0])

    base = values[node]
    want = []
    for i in idx:
        h = 1e-5 * max(abs(float(base.flat[i])), 1.0)
        up, down = base.copy(), base.copy()
        up.flat[i] += h
        down.flat[i] -= h
        want.append((loss_with(up) - loss_with(down)) / (2 * h))
    clear = ~est.kink  # a pixel whose step crosses a pooling tie or relu's 0 has no one derivative
    assert clear.sum() >= 8
    np.testing.assert_allclose(est.numeric[clear], np.array(want)[clear], rtol=1e-5, atol=1e-9)


def _tied_image(rng, shape):
    """Values with ties and near-ties inside pooling windows and exact zeros (relu's kink)."""
    x = rng.normal(size=shape)
    x[..., 0, 1] = x[..., 0, 0]  # ties in the first window row
    x[..., 2, 3] = x[..., 2, 2] + 1e-13  # near-ties
    x[..., 2, 5] = x[..., 2, 4] + 8e-9  # within reach of a step of 1e-9 at 2h, not at h
    x[..., 1, 3] = 7e-9  # the same for relu
    x[..., 3, 0] = 0.0
    return one(x)


@pytest.mark.parametrize("points", [1, 4])
@pytest.mark.parametrize("kind", ["full", "col"])
@pytest.mark.parametrize("step", [1e-20j, 1e-14, 1e-9, 0.3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", [ops.ReLU(), ops.MaxPool2d(size=2)], ids=lambda op: op.name)
def test_changes_far_from_kinks_take_the_plain_branch_exactly(op, dtype, step, kind, points, rng):
    """A change whose real part is far smaller than the distance to every kink (the complex step;
    a tiny real step) follows the plain branch (relu's side, the window's plain maximum) except
    near a kink, where it is computed as forward does: the change equals forward on the dense
    copies less the plain output, to the last bit, and the kinks counted equal the dense path's,
    for every size of step (large ones take the dense path), for stencils of several points
    (central differences: ±h, ±2h, whose crossings are counted position by position) and in
    float32 (whose rounding makes ties of its own)."""
    from gradverify import delta
    from gradverify.numeric.prober import crossings
    shape = (3, 2, 4, 6)
    x = _tied_image(rng, shape).astype(dtype)
    k = 6
    scale = np.array([1.0, -1.0, 2.0, -2.0][:points])
    if kind == "full":
        vals = rng.normal(size=(k,) + shape) * step
        d = delta.Delta.full(np.concatenate([m * vals for m in scale]).astype(np.result_type(dtype, vals)), shape)
    else:
        vals, at = rng.normal(size=(k, 3, 4, 6)) * step, rng.integers(0, 2, k)
        d = delta.Delta.col(np.tile(at, points), np.concatenate([m * vals for m in scale]).astype(
            np.result_type(dtype, vals)), shape)
    mode = "complex" if np.iscomplexobj(d.vals) else "real"
    out = op.forward(x)
    hits: list = []
    res = delta.push(op, 0, d, [x], out,
                     on_kink=lambda dist, plain: hits.append(crossings(dist, plain, points, k, mode)))
    dense = d.dense(x)
    assert res is not None
    np.testing.assert_array_equal(res.dense(np.zeros_like(out, dtype=dense.dtype)), op.forward(dense) - out)
    want = crossings(op.kink_distance(dense), op.kink_distance(x), points, k, mode)
    assert [h.tolist() for h in hits if h is not None] == [want.tolist()]
    if op.name == "max_pool2d" and mode == "complex" and dtype == np.float64:
        assert want.sum() > 0  # the ties are moved, and seen

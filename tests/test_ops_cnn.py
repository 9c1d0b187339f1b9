"""The CNN and sequence ops (conv, pools, norms, shapes, more activations): hand-derived numbers
on small cases, an independent central-difference VJP on random inputs, the complex step, kinks,
and the sparse pushes of conv, batchnorm and max pooling (against the dense copies)."""

import numpy as np
import pytest

from gradverify import ops

from conftest import vjp_central

R2 = np.sqrt(2.0)


def one(a):
    """An array with the leading perturbation axis B = 1."""
    return np.asarray(a, dtype=float)[None]


# -- hand-derived numbers -------------------------------------------------------------------------

def test_conv2d_by_hand():
    # w = [[1, 0], [0, -1]]: out[p, q] = x[p, q] - x[p+1, q+1] + b = -4 + 0.5 on 1..9
    x = one(np.arange(1.0, 10.0).reshape(1, 1, 3, 3))
    w = one([[[[1.0, 0.0], [0.0, -1.0]]]])
    b = one([0.5])
    op = ops.Conv2d(stride=1, pad=0)
    out = op.forward(x, w, b)
    assert out.tolist() == [[[[[-3.5, -3.5], [-3.5, -3.5]]]]]
    dx, dw, db = op.backward(np.ones_like(out), out, x, w, b)
    assert db.tolist() == [[4.0]]
    # dw[i, j] = Σ_{p,q} x[p+i, q+j]: the four 2×2 corners' sums
    assert dw.tolist() == [[[[[12.0, 16.0], [24.0, 28.0]]]]]
    # dx[a, b] = [a≤1, b≤1] - [a≥1, b≥1]
    assert dx.tolist() == [[[[[1.0, 1.0, 0.0], [1.0, 0.0, -1.0], [0.0, -1.0, -1.0]]]]]


def test_conv2d_padding_and_stride_by_hand():
    # x 2×2 padded to 4×4; a 3×3 window of ones at stride 2 fits once, at the top left
    x = one([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = one(np.ones((1, 1, 3, 3)))
    op = ops.Conv2d(stride=2, pad=1)
    out = op.forward(x, w, one([0.0]))
    assert out.tolist() == [[[[[10.0]]]]]
    dx, dw, _ = op.backward(np.ones_like(out), out, x, w, one([0.0]))
    assert dw.tolist() == [[[[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]]]]
    assert dx.tolist() == [[[[[1.0, 1.0], [1.0, 1.0]]]]]


def test_max_pool_by_hand_and_its_ties():
    x = one([[[[1.0, 3.0, 5.0, 5.0], [2.0, 0.0, 4.0, 1.0]]]])
    op = ops.MaxPool2d(size=2)
    out = op.forward(x)
    assert out.tolist() == [[[[[3.0, 5.0]]]]]
    (dx,) = op.backward(one([[[[10.0, 20.0]]]]), out, x)
    # the second window ties (5, 5): all of its gradient goes to the first maximum
    assert dx.tolist() == [[[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]]
    dist = op.kink_distance(x)
    assert dist.shape == (1, 1, 1, 1, 2, 4)
    assert dist[0, 0, 0, 0, 0].tolist() == [1 - 3, 3 - 2, 2 - 3, 0 - 3]
    assert dist[0, 0, 0, 0, 1].tolist() == [0.0, 0.0, 4 - 5, 1 - 5]  # the tie is a kink


def test_avg_pool_by_hand():
    x = one([[[[1.0, 2.0, 9.0], [3.0, 4.0, 9.0]]]])  # the third column: left over by the stride
    op = ops.AvgPool2d(size=2)
    out = op.forward(x)
    assert out.tolist() == [[[[[2.5]]]]]
    (dx,) = op.backward(one([[[[4.0]]]]), out, x)
    assert dx.tolist() == [[[[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]]]]]


def test_max_by_hand():
    x = one([[1.0, 3.0, 3.0], [4.0, 0.0, 2.0]])
    op = ops.Max(axis=-1)
    assert op.forward(x).tolist() == [[3.0, 4.0]]
    (dx,) = op.backward(one([1.0, 2.0]), None, x)
    assert dx.tolist() == [[[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]]]
    assert op.kink_distance(x).tolist() == [[[-2.0, 0.0, 0.0], [2.0, -4.0, -2.0]]]
    assert ops.Max(axis=0).forward(x).tolist() == [[4.0, 3.0, 3.0]]


# x = [0, 0, 3]: μ = 1, σ² = 2, xhat = [-1, -1, 2]/√2; for g = [1, 0, 0] (gamma 1), by the chain
# rule through μ and σ: dx = [1, -1, 0] / (2√2)
XHAT = np.array([-1.0, -1.0, 2.0]) / R2
DX = np.array([1.0, -1.0, 0.0]) / (2 * R2)


def test_batchnorm_by_hand():
    op = ops.BatchNorm(eps=0.0)
    x, gamma, beta = one([[0.0], [0.0], [3.0]]), one([2.0]), one([1.0])
    out = op.forward(x, gamma, beta)
    np.testing.assert_allclose(out[0, :, 0], 2 * XHAT + 1)
    dx, dgamma, dbeta = op.backward(one([[1.0], [0.0], [0.0]]), out, x, one([1.0]), beta)
    np.testing.assert_allclose(dx[0, :, 0], DX, atol=1e-15)
    np.testing.assert_allclose(dgamma, [[XHAT[0]]])
    assert dbeta.tolist() == [[1.0]]


def test_layernorm_by_hand():
    op = ops.LayerNorm(eps=0.0)
    x = one([[0.0, 0.0, 3.0], [5.0, 5.0, 5.0]])  # a constant row normalizes to 0 (eps > 0 needed)
    out = ops.LayerNorm(eps=1e-5).forward(x, one(np.ones(3)), one(np.zeros(3)))
    np.testing.assert_allclose(out[0, 0], XHAT, rtol=1e-5)
    assert out[0, 1].tolist() == [0.0, 0.0, 0.0]
    dx, _, _ = op.backward(one([[1.0, 0.0, 0.0]]), None, x[:, :1], one(np.ones(3)), one(np.zeros(3)))
    np.testing.assert_allclose(dx[0, 0], DX, atol=1e-15)


def test_spatial_batchnorm_and_groupnorm_by_hand():
    # two channels, each [0, 0, 3] over N·H·W (spread over N = 1, W = 3, and shifted by 1)
    x = one([[[[0.0, 0.0, 3.0]], [[1.0, 1.0, 4.0]]]])  # (1, 2, 1, 3)
    ones, zeros = one([1.0, 1.0]), one([0.0, 0.0])
    out = ops.SpatialBatchNorm(eps=0.0).forward(x, ones, zeros)
    np.testing.assert_allclose(out[0, 0, :, 0], [XHAT, XHAT])
    # groupnorm with 2 groups: one channel each, the same numbers; with 1 group: 6 values
    np.testing.assert_allclose(ops.GroupNorm(groups=2, eps=0.0).forward(x, ones, zeros), out)
    g1 = ops.GroupNorm(groups=1, eps=0.0).forward(x, ones, zeros)
    all6 = np.array([0, 0, 3, 1, 1, 4.0])
    np.testing.assert_allclose(g1.ravel(), (all6 - all6.mean()) / all6.std())


def test_dropout_mask_is_the_seeded_draw():
    op = ops.Dropout(keep=0.5, seed=3)
    x = one(np.arange(1.0, 13.0).reshape(3, 4))
    mask = np.random.default_rng(3).random((3, 4)) < 0.5
    np.testing.assert_array_equal(op.forward(x)[0], x[0] * mask / 0.5)
    np.testing.assert_array_equal(op.forward(np.stack([x[0], 2 * x[0]]))[1], 2 * x[0] * mask / 0.5)
    (dx,) = op.backward(np.ones_like(x), None, x)
    np.testing.assert_array_equal(dx[0], mask / 0.5)


def test_embedding_by_hand():
    w = one([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    op = ops.Embedding(indices=[[0, 2], [2, 2]])
    out = op.forward(w)
    assert out.tolist() == [[[[1, 2], [5, 6]], [[5, 6], [5, 6]]]]
    (dw,) = op.backward(np.ones_like(out), out, w)
    assert dw.tolist() == [[[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]]]  # row 2 read three times


def test_shape_ops_by_hand():
    x = one(np.arange(12.0).reshape(2, 3, 2))
    assert ops.Flatten().forward(x).tolist() == [[[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]]
    assert ops.Reshape(shape=[2, 3]).forward(x).shape == (1, 2, 2, 3)
    t = ops.Transpose(axes=[0, 2, 1]).forward(x)
    assert t[0, 1].tolist() == [[6, 8, 10], [7, 9, 11]]
    c = ops.Concat(axis=1)
    out = c.forward(x, one(np.full((2, 1, 2), -1.0)))
    assert out[0, 0].tolist() == [[0, 1], [2, 3], [4, 5], [-1, -1]]
    da, db = c.backward(out, out, x, one(np.zeros((2, 1, 2))))
    assert np.array_equal(da, x) and db.tolist() == [[[[-1, -1]], [[-1, -1]]]]


def test_more_activations_by_hand():
    x = one([-1.0, 0.0, 2.0])
    g = np.ones_like(x)
    assert ops.Abs().forward(x).tolist() == [[1.0, 0.0, 2.0]]
    assert ops.Abs().backward(g, None, x)[0].tolist() == [[-1.0, 0.0, 1.0]]  # 0 at the kink
    elu = ops.ELU(alpha=2.0)
    np.testing.assert_allclose(elu.forward(x), [[2 * (np.exp(-1) - 1), 0, 2]])
    np.testing.assert_allclose(elu.backward(g, None, x)[0], [[2 * np.exp(-1), 2.0, 1.0]])
    c = np.sqrt(2 / np.pi)
    np.testing.assert_allclose(ops.GELU().forward(x)[0, 1:], [0.0, np.tanh(c * (2 + 0.044715 * 8)) + 1])
    assert ops.GELU().backward(g, None, x)[0][0, 1] == 0.5
    sp = ops.Softplus()
    np.testing.assert_allclose(sp.forward(x), [[np.log1p(np.exp(-1)), np.log(2), 2 + np.log1p(np.exp(-2))]])
    assert sp.backward(g, None, x)[0][0, 1] == 0.5
    assert sp.forward(one([1000.0, -1000.0])).tolist() == [[1000.0, 0.0]]
    ls = ops.LogSoftmax()
    z = one([[0.0, np.log(3.0)]])
    np.testing.assert_allclose(ls.forward(z), np.log([[[0.25, 0.75]]]))
    np.testing.assert_allclose(ls.backward(one([[1.0, 0.0]]), ls.forward(z), z)[0], [[[0.75, -0.75]]])


def test_kinks_declared():
    x = one([-1.0, 0.0, 2.0])
    assert ops.Abs().kink_distance(x).tolist() == [[-1.0, 0.0, 2.0]]
    assert ops.ELU(alpha=0.5).kinked and ops.ELU(alpha=0.5).kink_distance(x) is x
    assert not ops.ELU(alpha=1.0).kinked and ops.ELU().kink_distance(x) is None
    for op in (ops.Conv2d(), ops.AvgPool2d(), ops.BatchNorm(), ops.GELU(), ops.Softplus(), ops.Dropout()):
        assert not op.kinked


# -- random inputs: central differences and the complex step ---------------------------------------

def _cases(rng):
    """(op, inputs) for every op, away from kinks, each with the leading axis."""
    def n(*shape):
        return rng.normal(size=(1,) + shape)
    img = n(2, 3, 5, 5)
    away = n(3, 4)
    away = away + np.sign(away) * 0.2
    return [
        (ops.Conv2d(stride=2, pad=1), [img, n(4, 3, 3, 3), n(4)]),
        (ops.Conv2d(stride=1, pad=0), [n(2, 2, 4, 5), n(3, 2, 2, 3), n(3)]),
        (ops.MaxPool2d(size=2), [img]),
        (ops.MaxPool2d(size=3, stride=2), [img]),
        (ops.AvgPool2d(size=2, stride=1), [img]),
        (ops.Max(axis=0), [n(3, 4)]),
        (ops.BatchNorm(), [n(5, 3), n(3), n(3)]),
        (ops.LayerNorm(), [n(4, 5), n(5), n(5)]),
        (ops.SpatialBatchNorm(), [n(2, 3, 3, 2), n(3), n(3)]),
        (ops.GroupNorm(groups=2), [n(2, 4, 2, 3), n(4), n(4)]),
        (ops.Dropout(keep=0.6, seed=1), [n(3, 4)]),
        (ops.Embedding(indices=[[0, 3, 3], [1, 0, 2]]), [n(4, 2)]),
        (ops.Flatten(), [img]),
        (ops.Reshape(shape=[5, 15]), [img]),
        (ops.Transpose(axes=[2, 0, 1]), [n(2, 3, 4)]),
        (ops.Concat(axis=-1), [n(2, 3), n(2, 1), n(2, 2)]),
        (ops.Abs(), [away]),
        (ops.ELU(alpha=0.7), [away]),
        (ops.ELU(), [n(3, 4)]),
        (ops.GELU(), [n(3, 4) * 2]),
        (ops.Softplus(), [n(3, 4) * 3]),
        (ops.LogSoftmax(), [n(3, 4) * 2]),
    ]


CASES = _cases(np.random.default_rng(99))
IDS = [op.label for op, _ in CASES]


def _with(xs, i, xi):
    args = list(xs)
    args[i] = xi
    return args


@pytest.mark.parametrize("op,xs", CASES, ids=IDS)
def test_backward_matches_central_differences(op, xs, rng):
    out = op.forward(*xs)
    g = rng.normal(size=out.shape)
    grads = op.backward(g, out, *xs)
    assert len(grads) == len(xs)
    for i, x in enumerate(xs):
        want = vjp_central(lambda xi, i=i: op.forward(*_with(xs, i, xi)), x, g)
        assert grads[i].shape == x.shape
        np.testing.assert_allclose(grads[i], want, rtol=1e-6, atol=1e-8, err_msg=f"{op.label} input {i}")


@pytest.mark.parametrize("op,xs", CASES, ids=IDS)
def test_complex_step_agrees_with_backward(op, xs, rng):
    """Im f(x + ih)/h element by element gives the backward's VJP to ~1e-13."""
    out = op.forward(*xs)
    g = rng.normal(size=out.shape)
    grads = op.backward(g, out, *xs)
    h = 1e-20
    for i, x in enumerate(xs):
        est = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            args = [a.astype(complex) for a in xs]
            args[i][j] += 1j * h
            est[j] = np.sum(op.forward(*args) * g).imag / h
        np.testing.assert_allclose(grads[i], est, rtol=1e-12, atol=1e-13, err_msg=op.label)


@pytest.mark.parametrize("op,xs", CASES, ids=IDS)
def test_batched_copies_broadcast(op, xs, rng):
    """Three copies of the first input against the others unperturbed (B = 1): each copy's
    output is the plain forward of that copy."""
    copies = np.concatenate([xs[0], xs[0] + 0.01, xs[0] - 0.02])
    out = op.forward(copies, *xs[1:])
    assert out.shape[0] == 3
    np.testing.assert_allclose(out[2], op.forward(copies[2:], *xs[1:])[0], rtol=1e-12, atol=1e-12)
    g = rng.normal(size=out.shape)
    grads = op.backward(g, out, copies, *xs[1:])
    assert [gr.shape for gr in grads] == [copies.shape] + [x.shape for x in xs[1:]]


def test_max_pool_tie_is_a_kink_on_both_sides():
    """A tie is 0 in kink_distance; a step either way makes distances change sign (real steps),
    and the complex step moves the tied entry off 0 in its imaginary part only."""
    x = one([[[[2.0, 2.0], [0.0, 1.0]]]])
    op = ops.MaxPool2d(size=2)
    plain = op.kink_distance(x)
    assert plain.ravel().tolist() == [0.0, 0.0, -2.0, -1.0]
    for h in (1e-6, -1e-6):
        moved = x.copy()
        moved[0, 0, 0, 0, 1] += h
        d = op.kink_distance(moved).ravel()
        assert np.sign(d[:2]).tolist() in ([1.0, -1.0], [-1.0, 1.0])
    z = x.astype(complex)
    z[0, 0, 0, 0, 1] += 1e-20j
    d = op.kink_distance(z).ravel()
    assert d.real[1] == 0 and d.imag[1] != 0


@pytest.mark.parametrize("bad", [dict(stride=0), dict(pad=-1), dict(stride=1.5)])
def test_conv2d_refuses_bad_attrs(bad):
    with pytest.raises(ValueError):
        ops.Conv2d(**bad)


@pytest.mark.parametrize("cls,bad", [(ops.MaxPool2d, dict(size=0)), (ops.Dropout, dict(keep=0.0)),
                                     (ops.Dropout, dict(keep=1.5)), (ops.GroupNorm, dict(groups=0)),
                                     (ops.Transpose, dict(axes=[0, 0])), (ops.Reshape, dict(shape=[])),
                                     (ops.Embedding, dict(indices=[1, 2])), (ops.BatchNorm, dict(eps=-1))])
def test_bad_attrs_are_refused(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)


def test_conv2d_without_bias_and_its_input_count():
    rng = np.random.default_rng(7)
    x, w, b = rng.normal(size=(1, 2, 3, 4, 4)), rng.normal(size=(1, 2, 3, 3, 3)), np.zeros((1, 2))
    op = ops.Conv2d(pad=1)
    np.testing.assert_array_equal(op.forward(x, w), op.forward(x, w, b))
    out = op.forward(x, w)
    g = rng.normal(size=out.shape)
    dx, dw = op.backward(g, out, x, w)
    np.testing.assert_allclose(dw, vjp_central(lambda wi: op.forward(x, wi), w, g), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match=r"\[x, w\] or \[x, w, b\]"):
        op.forward(x)


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
        hits = []
        res = delta.push(op, 0, d, [x], op.forward(x),
                         on_kink=lambda dist, plain: hits.append(crossings(dist, plain, 1, 3, "complex")))
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

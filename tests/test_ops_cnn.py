"""The CNN and sequence ops (conv, pools, norms, shapes, more activations): hand-derived numbers
on small cases, an independent central-difference VJP on random inputs, the complex step, kinks,
(the sparse pushes of these ops: test_delta_cnn.py)."""

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

"""Sparse changes pushed through ops give exactly what the dense copies give."""
import numpy as np
import pytest

from gradverify import delta, ops
from gradverify.delta import Delta, Kind


def _dense_out(op, slot, d, xs):
    dense = [d.dense(x) if k == slot else x for k, x in enumerate(xs)]
    return op.forward(*dense)


def _kinds(rng, shape):
    k = 5
    n, m = shape
    yield delta.elements(rng.choice(n * m, k), rng.normal(size=k), shape)
    yield Delta.row(rng.integers(0, n, k), rng.normal(size=(k, m)), shape)
    yield Delta.col(rng.integers(0, m, k), rng.normal(size=(k, n)), shape)
    yield Delta.full(rng.normal(size=(k, n, m)), shape)


CASES = [
    (ops.MatMul(), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 3, 5))]),
    (ops.AddBias(), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 3))]),
    (ops.Add(), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 4, 3))]),
    (ops.Sub(), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 4, 3))]),
    (ops.Mul(), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 4, 1))]),
    (ops.ReLU(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.Tanh(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.Softmax(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.Exp(stable=True), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.RowSum(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.NegLogPick([0, 2, 1, 1]), lambda r: [np.abs(r.normal(size=(1, 4, 3))) + 0.1]),
    (ops.HingeMargins([0, 2, 1, 1]), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.BatchMean(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.Mean(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.Sum(), lambda r: [r.normal(size=(1, 4, 3))]),
    (ops.L2Penalty(0.3), lambda r: [r.normal(size=(1, 4, 3)), r.normal(size=(1, 3))]),
]


@pytest.mark.parametrize("op,make", CASES, ids=[c[0].name for c in CASES])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_push_matches_dense(op, make):
    rng = np.random.default_rng(3)
    xs = make(rng)
    out = op.forward(*xs)
    for slot, x in enumerate(xs):
        if x.ndim != 3:
            continue
        for d in _kinds(rng, x.shape[1:]):
            res = delta.push(op, slot, d, xs, out)
            if res is None:
                continue  # the engine falls back to the dense copies
            want = _dense_out(op, slot, d, xs)
            got = res.dense(out) if isinstance(res, Delta) else res
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{op.name} {d.kind}")


def test_bias_change_is_a_column():
    x, b = np.zeros((1, 3, 2)), np.zeros((1, 2))
    out = ops.AddBias().forward(x, b)
    d = delta.elements(np.array([1]), np.array([0.5]), (2,))
    res = delta.push(ops.AddBias(), 1, d, [x, b], out)
    assert res.kind is Kind.COL and res.index.tolist() == [1]
    assert res.dense(out)[0].tolist() == [[0, 0.5]] * 3


def test_complex_step_goes_through_sparse_paths():
    """An imaginary change pushed through matmul and tanh keeps Im = h·(derivative)."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(1, 2, 3)), rng.normal(size=(1, 3, 2))
    out = ops.MatMul().forward(x, w)
    d = delta.elements(np.array([4]), np.array([1e-20j]), (3, 2))  # w[2, 0]
    res = delta.push(ops.MatMul(), 1, d, [x, w], out)
    assert res.kind is Kind.COL
    np.testing.assert_allclose(res.vals.imag / 1e-20, x[0][:, 2][None], rtol=1e-15)
    t = ops.Tanh()
    tout = t.forward(out)
    res2 = delta.push(t, 0, res, [out], tout)
    want = (1 - np.tanh(out[0][:, 0]) ** 2) * x[0][:, 2]
    np.testing.assert_allclose(res2.vals.imag[0] / 1e-20, want, rtol=1e-14)


def test_push_rows_with_two_changed_inputs():
    """softmax = exps · divexps after both changed in the same rows: only those rows recomputed,
    equal to the dense copies."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1, 4, 3)), rng.normal(size=(1, 4, 1))
    op = ops.Mul()
    out = op.forward(a, b)
    rows = np.array([2, 0, 3])
    da = Delta.row(rows, rng.normal(size=(3, 3)), (4, 3))
    db = delta.elements(np.array([2, 0, 3]), rng.normal(size=3), (4, 1))
    res = delta.push_rows(op, {0: da, 1: db}, [a, b], out)
    assert res.kind is Kind.ROW
    want = op.forward(da.dense(a), db.dense(b))
    np.testing.assert_allclose(res.dense(out), want, rtol=1e-13)
    other = Delta.row(np.array([1, 1, 1]), rng.normal(size=(3, 3)), (4, 3))
    assert delta.push_rows(op, {0: other, 1: db}, [a, b], out) is None  # different rows: dense


def _by_hand(kind, index, vals, base):
    """The k copies a change stands for, one copy at a time (no Delta code)."""
    copies = []
    for b in range(vals.shape[0]):
        c = base[0].copy()
        if kind == "elem":
            c[tuple(index[b])] += vals[b]
        elif kind == "row":
            c[index[b], :] += vals[b]
        elif kind == "col":
            c[:, index[b]] += vals[b]
        else:
            c += vals[b]
        copies.append(c)
    return np.stack(copies)


def test_constructors_give_the_same_dense_copies():
    """Delta.elem/row/col/full are the string-kind constructor (numeric.py's
    Delta("full", None, vals, shape)), and their dense copies are the hand-built ones."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(1, 4, 3))
    k = 5
    made = {
        "elem": (np.stack([rng.integers(0, 4, k), rng.integers(0, 3, k)], axis=1), rng.normal(size=k)),
        "row": (rng.integers(0, 4, k), rng.normal(size=(k, 3))),
        "col": (rng.integers(0, 3, k), rng.normal(size=(k, 4))),
        "full": (None, rng.normal(size=(k, 4, 3))),
    }
    for kind, (index, vals) in made.items():
        d = Delta.full(vals, (4, 3)) if kind == "full" else getattr(Delta, kind)(index, vals, (4, 3))
        old = Delta(kind, index, vals, (4, 3))
        assert d.kind is old.kind is Kind(kind)
        assert d.index is old.index and d.vals is old.vals and d.shape == old.shape
        want = _by_hand(kind, index, vals, base)
        np.testing.assert_array_equal(d.dense(base), want)
        np.testing.assert_array_equal(old.dense(base), want)


def test_elements_flat_indices():
    base = np.arange(12.0).reshape(1, 4, 3)
    d = delta.elements(np.array([4, 11]), np.array([0.5, -1.0]), (4, 3))
    assert d.kind is Kind.ELEM and d.index.tolist() == [[1, 1], [3, 2]]
    np.testing.assert_array_equal(d.dense(base), _by_hand("elem", d.index, d.vals, base))
    scalar = delta.elements(np.array([0, 0]), np.array([[0.5], [2.0]]), ())
    assert scalar.kind is Kind.FULL and scalar.vals.tolist() == [0.5, 2.0]


def test_kind_accepts_strings():
    d = Delta("full", None, np.zeros((2, 3)), (3,))  # numeric.py builds its changes this way
    assert d.kind is Kind.FULL and d.kind == "full" and str(d.kind) == "full"
    with pytest.raises(ValueError):
        Delta("diagonal", None, np.zeros((2, 3)), (3,))
    with pytest.raises(ValueError):
        _ = Delta.full(np.zeros((2, 3)), (3,)).at


def test_column_gather_is_contiguous_and_right(rng):
    """COL's plain values are channel index[b] of every sample: checked against a plain loop, and
    laid out C-contiguous (the pooling and norm pushes index them flat)."""
    base = rng.normal(size=(1, 2, 4, 3, 3))
    d = Delta.col(np.array([3, 0, 3]), rng.normal(size=(3, 2, 3, 3)), (2, 4, 3, 3))
    got = d.gather(base)
    want = np.array([[base[0, n, c] for n in range(2)] for c in (3, 0, 3)])
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous


def test_full_change_through_an_elementwise_kink_sees_the_plain_distances_once(rng):
    """An elementwise op with kinks (relu) under a FULL change: the plain distances are the plain
    input's (B = 1), not k broadcast copies of it; the perturbed ones are the dense copies'."""
    x = rng.normal(size=(1, 4, 3))
    d = Delta.full(rng.normal(size=(5, 4, 3)), (4, 3))
    seen = []
    res = delta.push(ops.ReLU(), 0, d, [x], ops.ReLU().forward(x),
                     on_kink=lambda dist, plain: seen.append((dist.copy(), plain.copy())))
    assert res is not None and res.kind is Kind.FULL
    dist, plain = seen[0]
    assert plain.shape == x.shape
    np.testing.assert_array_equal(plain, ops.ReLU().kink_distance(x))
    np.testing.assert_array_equal(dist, ops.ReLU().kink_distance(d.dense(x)))
    np.testing.assert_array_equal(res.dense(ops.ReLU().forward(x)), np.maximum(d.dense(x), 0))


@pytest.mark.parametrize("factor", [np.array([2e-20j, -3e-20j, 1e-20j]), np.array([1 + 2e-20j, -0.5, 3j])])
@pytest.mark.parametrize("kind", [Kind.ROW, Kind.COL])
def test_a_scaled_change_is_its_rows_times_its_factors(kind, factor, rng):
    """Delta.scaled keeps a matmul's change as picked rows of a matrix and one factor per copy:
    its `vals` (made when first read) and dense copies are those of source[pick] · factor, by
    hand; its bytes, those of the rows gathered and the factors."""
    source, pick = rng.normal(size=(5, 4)), np.array([3, 0, 3])
    shape = (4, 6) if kind is Kind.COL else (6, 4)
    d = Delta.scaled(kind, np.array([0, 5, 2]), source, pick, factor, shape)
    assert d.nbytes == 3 * 4 * 8 + factor.nbytes
    by_hand = np.array([[r * f for r in source[p]] for p, f in zip(pick, factor)])
    np.testing.assert_array_equal(d.vals, by_hand)
    assert d.nbytes == d.vals.nbytes
    plain = Delta(kind, d.index, by_hand, shape)
    base = rng.normal(size=(1, *shape))
    np.testing.assert_array_equal(d.dense(base), plain.dense(base))
    d.vals = 2 * by_hand  # set: the rows no longer describe it
    assert d.source is None and d.factor is None
    np.testing.assert_array_equal(d.vals, 2 * by_hand)

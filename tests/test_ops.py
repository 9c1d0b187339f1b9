"""Every op's backward against hand-derived numbers, against an independent central-difference
VJP on random inputs, and against the complex step; kinks where they should be; the registry and
the base class's defaults."""
import numpy as np
import pytest

from gradverify import delta, ops

from conftest import vjp_central


def test_matmul_by_hand():
    x = np.array([[1.0, 2.0]])          # 1×2
    w = np.array([[3.0], [4.0]])        # 2×1
    out = ops.MatMul().forward(x[None], w[None])
    assert out[0].tolist() == [[11.0]]
    dx, dw = ops.MatMul().backward(np.array([[[2.0]]]), out, x[None], w[None])
    assert dx[0].tolist() == [[6.0, 8.0]]     # g·wᵀ
    assert dw[0].tolist() == [[2.0], [4.0]]   # xᵀ·g


def test_add_bias_sums_rows():
    x, b = np.zeros((1, 3, 2)), np.array([[1.0, -1.0]])
    assert ops.AddBias().forward(x, b)[0].tolist() == [[1, -1]] * 3
    g = np.arange(6.0).reshape(1, 3, 2)
    dx, db = ops.AddBias().backward(g, None, x, b)
    assert db.tolist() == [[0 + 2 + 4, 1 + 3 + 5]]
    assert np.array_equal(dx, g)


def test_notebook_softmax_pieces_by_hand():
    # exps = e^x; sexps = Σ; divexps = 1/sexps; softmax = exps·divexps
    x = np.array([[[0.0, np.log(3.0)]]])
    exps = ops.Exp().forward(x)
    assert np.allclose(exps, [[[1.0, 3.0]]])
    sexps = ops.RowSum().forward(exps)
    assert np.allclose(sexps, [[[4.0]]])
    div = ops.Reciprocal().forward(sexps)
    assert np.allclose(div, [[[0.25]]])
    (ddiv,) = ops.Reciprocal().backward(np.array([[[2.0]]]), div, sexps)
    assert np.allclose(ddiv, -2.0 / 16.0)
    da, db = ops.Mul().backward(np.array([[[1.0, 1.0]]]), None, exps, div)
    assert np.allclose(da, 0.25) and np.allclose(db, [[[4.0]]])


def test_stable_exp_shift_cancels_in_softmax():
    x = np.array([[[1000.0, 999.0]]])
    e = ops.Exp(stable=True).forward(x)
    assert np.allclose(e, [[[1.0, np.exp(-1.0)]]])


def test_neg_log_pick_by_hand():
    p = np.array([[[0.25, 0.75], [0.5, 0.5]]])
    op = ops.NegLogPick([1, 0])
    assert np.allclose(op.forward(p), [[-np.log(0.75), -np.log(0.5)]])
    (dp,) = op.backward(np.array([[1.0, 2.0]]), None, p)
    assert np.allclose(dp, [[[0, -1 / 0.75], [-2 / 0.5, 0]]])


def test_hinge_by_hand():
    # cs231n svm: scores [3, 1, 2.5], label 0 -> margins [0, max(0, 1-3+1)=0, 2.5-3+1=0.5]
    s = np.array([[[3.0, 1.0, 2.5]]])
    op = ops.HingeMargins([0])
    assert np.allclose(op.forward(s), [[[0, 0, 0.5]]])
    (ds,) = op.backward(np.ones((1, 1, 3)), None, s)
    assert np.allclose(ds, [[[-1, 0, 1]]])


def test_activations_known_slopes():
    x = np.array([[0.0]])
    assert np.allclose(ops.Sigmoid().backward(np.ones((1, 1)), ops.Sigmoid().forward(x), x), 0.25)
    assert np.allclose(ops.Tanh().backward(np.ones((1, 1)), ops.Tanh().forward(x), x), 1.0)
    assert ops.ReLU().backward(np.ones((1, 1)), None, x)[0][0, 0] == 0.0   # the kink convention
    leaky = ops.LeakyReLU(0.1)
    assert leaky.backward(np.ones((1, 1)), None, np.array([[-2.0]]))[0][0, 0] == pytest.approx(0.1)


def test_sigmoid_does_not_overflow():
    x = np.array([[-1000.0, 1000.0]])
    out = ops.Sigmoid().forward(x)
    assert np.allclose(out, [[0.0, 1.0]]) and np.all(np.isfinite(out))


def test_l2_penalty_by_hand():
    a, b = np.array([[1.0, 2.0]]), np.array([[[3.0]]])
    op = ops.L2Penalty(0.5)
    assert op.forward(a, b).tolist() == [0.5 * (1 + 4 + 9)]
    da, db = op.backward(np.array([1.0]), None, a, b)
    assert da.tolist() == [[1.0, 2.0]] and db.tolist() == [[[3.0]]]


def _cases(rng):
    """(op, inputs) for every op, inputs away from kinks, each with the leading axis."""
    x = rng.normal(size=(1, 3, 4))
    p = np.abs(rng.normal(size=(1, 3, 4))) + 0.1
    p = p / p.sum(-1, keepdims=True)
    away = x + np.sign(x) * 0.2  # |x| ≥ 0.2: no kink within the difference step
    return [
        (ops.MatMul(), [x, rng.normal(size=(1, 4, 2))]),
        (ops.AddBias(), [x, rng.normal(size=(1, 4))]),
        (ops.Add(), [x, rng.normal(size=(1, 4))]),
        (ops.Sub(), [x, rng.normal(size=(1, 3, 4))]),
        (ops.Mul(), [x, rng.normal(size=(1, 3, 1))]),
        (ops.Reciprocal(), [p]),
        (ops.Square(), [x]),
        (ops.RowSum(), [x]),
        (ops.Sum(), [x]),
        (ops.Mean(), [x]),
        (ops.BatchMean(), [x]),
        (ops.Identity(), [x]),
        (ops.ReLU(), [away]),
        (ops.LeakyReLU(0.2), [away]),
        (ops.Sigmoid(), [x]),
        (ops.Tanh(), [x]),
        (ops.Softmax(), [x]),
        (ops.Exp(), [x]),
        (ops.Exp(stable=True), [x]),
        (ops.NegLogPick([0, 3, 1]), [p]),
        (ops.HingeMargins([0, 3, 1]), [x * 3]),
        (ops.SubConst(rng.normal(size=(3, 4))), [x]),
        (ops.L2Penalty(0.3), [x, rng.normal(size=(1, 2))]),
    ]


CASES = _cases(np.random.default_rng(1234))
IDS = [f"{op.name}{'_stable' if getattr(op, 'stable', False) else ''}" for op, _ in CASES]


@pytest.mark.parametrize("op,xs", CASES, ids=IDS)
def test_backward_matches_central_differences(op, xs, rng):
    out = op.forward(*xs)
    g = rng.normal(size=out.shape)
    grads = op.backward(g, out, *xs)
    assert len(grads) == len(xs)
    for i, x in enumerate(xs):
        def f(xi, i=i):
            args = list(xs)
            args[i] = xi
            return op.forward(*args)
        if isinstance(op, ops.Exp) and op.stable:
            continue  # its backward treats the row max as constant (exact only inside softmax-CE)
        want = vjp_central(f, x, g)
        assert grads[i].shape == x.shape
        np.testing.assert_allclose(grads[i], want, rtol=1e-6, atol=1e-8, err_msg=f"{op.name} input {i}")


@pytest.mark.parametrize("op,xs", CASES, ids=IDS)
def test_complex_step_agrees_with_backward(op, xs, rng):
    """Every built-in is complex-analytic: Im f(x + ih)/h gives the same VJP to ~1e-13."""
    out = op.forward(*xs)
    g = rng.normal(size=out.shape)
    grads = op.backward(g, out, *xs)
    h = 1e-20
    for i, x in enumerate(xs):
        if isinstance(op, ops.Exp) and op.stable:
            continue
        est = np.zeros_like(x)
        for j in np.ndindex(x.shape):
            args = [a.astype(complex) for a in xs]
            args[i][j] += 1j * h
            est[j] = np.sum(op.forward(*args) * g).imag / h
        np.testing.assert_allclose(grads[i], est, rtol=1e-12, atol=1e-14, err_msg=f"{op.name}")


def test_kinks_declared():
    x = np.array([[-1.0, 0.0, 2.0]])
    assert ops.ReLU().kink_distance(x).tolist() == [[-1.0, 0.0, 2.0]]
    assert ops.Tanh().kink_distance(x) is None
    # hinge: margin of class 1 is exactly 0; the label's own column is never a kink
    s = np.array([[[2.0, 1.0, 0.0]]])
    d = ops.HingeMargins([0]).kink_distance(s)
    assert d[0, 0, 1] == 0.0 and d[0, 0, 0] != 0.0


def test_batched_forward_broadcasts():
    """B perturbed copies of one input against unperturbed ones (B = 1) give B outputs."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(5, 3, 4)), rng.normal(size=(1, 4, 2))
    out = ops.MatMul().forward(x, w)
    assert out.shape == (5, 3, 2)
    assert np.allclose(out[3], x[3] @ w[0])
    p = np.abs(rng.normal(size=(5, 3, 4)))
    assert ops.NegLogPick([0, 1, 2]).forward(p).shape == (5, 3)
    assert ops.L2Penalty(1.0).forward(x, w).shape == (5,)


# -- the registry ---------------------------------------------------------------------------------

def _op_classes():
    """Every Op subclass defined in the gradverify.ops package."""
    found, todo = [], [ops.Op]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("gradverify.ops."):
                found.append(sub)
    return found


def test_every_op_registered_under_its_name_once():
    classes = _op_classes()
    assert classes, "no op classes found"
    assert len(set(classes)) == len(classes)
    for cls in classes:
        assert ops.OPS.get(cls.name) is cls, f"{cls.__name__} is not OPS[{cls.name!r}]"
    assert sorted(ops.OPS.values(), key=id) == sorted(classes, key=id)  # nothing else, nothing twice
    assert all(name == cls.name for name, cls in ops.OPS.items())


def test_ops_order_is_the_listed_order():
    """Error messages and the schema list OPS in this order."""
    assert list(ops.OPS) == [
        "matmul", "add_bias", "add", "sub", "mul", "reciprocal", "square", "row_sum", "sum", "mean",
        "batch_mean", "identity", "relu", "leaky_relu", "sigmoid", "tanh", "softmax", "exp",
        "neg_log_pick", "hinge_margins", "sub_const", "weighted_sum", "l2_penalty",
        "conv2d", "max_pool2d", "avg_pool2d", "max", "batchnorm", "layernorm", "spatial_batchnorm",
        "groupnorm", "flatten", "reshape", "transpose", "concat", "embedding",
        "abs", "elu", "gelu", "softplus", "log_softmax", "dropout"]


def test_register_refuses_a_taken_name():
    before = dict(ops.OPS)

    class Another(ops.Op):
        name = "matmul"

    with pytest.raises(ValueError, match="matmul"):
        ops.register(Another)
    assert ops.OPS == before


def test_subclasses_are_not_registered():
    class Rounded(ops.NegLogPick):
        pass

    assert ops.OPS["neg_log_pick"] is ops.NegLogPick and Rounded not in ops.OPS.values()


# -- the base class's defaults -------------------------------------------------------------------

class Cube(ops.Op):
    """An op that provides only what it must."""

    name = "cube"

    def forward(self, x):
        return x * x * x

    def backward(self, g, out, x):
        return (3.0 * x * x * g,)


def test_base_class_defaults():
    op = Cube()
    assert (op.arity, op.complex_safe, op.kinked, op.opaque, op.row_separable) == (1, True, False, False, False)
    assert op.structure is None and op.label == "cube"
    x = np.arange(6.0).reshape(1, 2, 3)
    assert op.kink_distance(x) is None
    assert op.kink_distance_rows(x[0], np.array([0, 1])) is None
    np.testing.assert_array_equal(op.forward_rows(x[0], np.array([0, 1])), x[0] ** 3)
    assert op.push(0, delta.elements(np.array([1]), np.array([0.5]), (2, 3)), [x], op.forward(x)) is None
    with pytest.raises(NotImplementedError):
        ops.Op().forward(x)


@pytest.mark.parametrize("structure", [None, ops.Structure.ELEMENTWISE, ops.Structure.ROWWISE])
def test_no_push_means_no_sparse_rule_unless_structured(structure):
    """delta.push gives None (the dense copies) for an op with no push, unless its structure
    lets the changed slices be recomputed; then it matches the dense copies."""
    op = Cube()
    op.structure = structure
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 4, 3))
    out = op.forward(x)
    d = delta.elements(np.array([1, 7, 11]), rng.normal(size=3), (4, 3))
    res = delta.push(op, 0, d, [x], out)
    if structure is None:
        assert res is None
    else:
        np.testing.assert_allclose(res.dense(out), op.forward(d.dense(x)), rtol=1e-13)
    assert delta.push_rows(op, {0: d}, [x], out) is None  # not row_separable


def test_kink_distance_rows_default_follows_kink_distance():
    op = ops.ReLU()
    xr = np.array([[-1.0, 0.0, 2.0], [3.0, -4.0, 0.5]])
    np.testing.assert_array_equal(op.kink_distance_rows(xr, np.array([0, 2])), xr)


@pytest.mark.parametrize("dtypes", [(np.complex128, np.float64), (np.float64, np.complex128),
                                    (np.complex64, np.float32), (np.float64, np.float64)])
@pytest.mark.parametrize("pure_imaginary", [False, True])
def test_cmatmul_is_numpys_product(dtypes, pure_imaginary, rng):
    """complexmath.cmatmul (a complex side's parts through real products; the imaginary part
    alone where the real part is 0, as in a complex step's change) against numpy's own a @ b,
    batched and broadcast as matmul does."""
    from gradverify.ops.complexmath import cmatmul

    def draw(shape, dtype):
        v = rng.normal(size=shape)
        if np.issubdtype(dtype, np.complexfloating):
            v = (0 if pure_imaginary else v) + 1j * rng.normal(size=shape)
        return v.astype(dtype)

    a, b = draw((5, 3, 4), dtypes[0]), draw((4, 6), dtypes[1])
    got, want = cmatmul(a, b), a @ b
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = 1e-5 if want.dtype in (np.complex64, np.float32) else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    if pure_imaginary and np.iscomplexobj(got):
        assert not got.real.any()


@pytest.mark.parametrize("vals_dtype", [np.complex128, np.complex64, np.float64])
@pytest.mark.parametrize("pure_imaginary", [False, True])
def test_cscale_is_numpys_product(vals_dtype, pure_imaginary, rng):
    """complexmath.cscale (rows times one factor each; the imaginary part alone where the
    factors' real parts are 0) against numpy's rows * vals[:, None], value for value."""
    from gradverify.delta import scale_rows as cscale

    rows = rng.normal(size=(6, 5))
    vals = rng.normal(size=6)
    if np.issubdtype(vals_dtype, np.complexfloating):
        vals = (0 if pure_imaginary else vals) + 1j * rng.normal(size=6)
    vals = vals.astype(vals_dtype)
    got, want = cscale(rows, vals), rows * vals[:, None]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_a_stable_exp_alone_carries_its_row_max_in_its_gradient(rng):
    """e^(x - max x) on its own (not normalized by a softmax after it) depends on the max: its
    backward and its complex step both take that in, against central differences of the same
    function written out in numpy here."""
    op = ops.Exp(stable=True)
    x, g = rng.normal(size=(1, 3, 4)), rng.normal(size=(1, 3, 4))

    def f(z):
        return float(np.sum(g * np.exp(z - z.max(axis=-1, keepdims=True))))

    central = np.zeros(x.size)
    cstep = np.zeros(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = 1e-6
        central[k] = (f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))) / 2e-6
        cstep[k] = np.sum(g * op.forward(x + 1e-20j * e.reshape(x.shape) / 1e-6)).imag / 1e-20
    (analytic,) = op.backward(g, op.forward(x), x)
    np.testing.assert_allclose(analytic.reshape(-1), central, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(cstep, central, rtol=1e-7, atol=1e-9)
    top = x.argmax(axis=-1)
    assert np.all(np.abs(central.reshape(x.shape)[0, np.arange(3), top[0]]) > 1e-3)  # the max's own term

"""op.linalg against torch.linalg: values and gradients, float32 and float64, batched; the
degenerate cases (singular matrices, not positive-definite, equal eigenvalues) and the errors."""
import numpy as np
import pytest

from zkynet.framework import cg, op

torch = pytest.importorskip("torch")
la = op.linalg

TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=2e-3, atol=2e-4)}
DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def well_conditioned(rng, shape, dtype):
    n = shape[-1]
    return (rng.normal(size=shape) + n * np.eye(n)).astype(dtype)


def spd(rng, shape, dtype):
    x = rng.normal(size=shape)
    return (x @ np.swapaxes(x, -1, -2) + shape[-1] * np.eye(shape[-1])).astype(dtype)


def sym(rng, shape, dtype):
    x = rng.normal(size=shape)
    return ((x + np.swapaxes(x, -1, -2)) / 2).astype(dtype)


def compare(zk_fn, torch_fn, inputs, dtype, seed=0):
    """sum(w * f(inputs)) with random weights w: the value of f and the gradient of every input,
    zkynet against torch (f returns one array or a tuple of them)."""
    rng = np.random.default_rng(seed)
    ts = [torch.tensor(x, requires_grad=True) for x in inputs]
    ref = torch_fn(*ts)
    ref = ref if isinstance(ref, tuple) else (ref,)
    weights = [rng.normal(size=tuple(r.shape)).astype(dtype) for r in ref]
    sum(((r * torch.tensor(w)).sum() for r, w in zip(ref, weights))).backward()

    def loss(*args):
        out = zk_fn(*args)
        out = out if isinstance(out, tuple) else (out,)
        total = None
        for o, w in zip(out, weights):
            term = op.sum(o * w)
            total = term if total is None else total + term
        return total

    outs = zk_fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for o, r in zip(outs, ref):
        assert np.asarray(o.value).dtype == dtype
        np.testing.assert_allclose(np.asarray(o.value), r.detach().numpy(), **TOL[dtype])
    _, grads = cg.value_and_grad(loss, argnums=tuple(range(len(inputs))))(*inputs)
    for g, t in zip(grads, ts):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_solve_matches_torch_batched_with_broadcasting_and_vectors(dtype):
    rng = np.random.default_rng(1)
    a, b = well_conditioned(rng, (2, 3, 3), dtype), rng.normal(size=(2, 3, 2)).astype(dtype)
    compare(la.solve, torch.linalg.solve, [a, b], dtype)
    compare(la.solve, torch.linalg.solve, [a[0], b], dtype)
    compare(la.solve, torch.linalg.solve, [a, rng.normal(size=(2, 3)).astype(dtype)], dtype)
    compare(la.solve, torch.linalg.solve, [a, rng.normal(size=(3,)).astype(dtype)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inv_det_slogdet_match_torch(dtype):
    rng = np.random.default_rng(2)
    a = well_conditioned(rng, (3, 4, 4), dtype)
    compare(la.inv, torch.linalg.inv, [a], dtype)
    compare(la.det, torch.linalg.det, [rng.normal(size=(3, 4, 4)).astype(dtype)], dtype)
    compare(lambda x: la.slogdet(x).logabsdet, lambda x: torch.linalg.slogdet(x).logabsdet,
            [rng.normal(size=(3, 4, 4)).astype(dtype)], dtype)
    s = la.slogdet(-np.eye(3, dtype=dtype))
    assert float(np.asarray(s.sign.value)) == -1.0 and float(np.asarray(s.logabsdet.value)) == 0.0


def test_det_gradient_at_a_singular_matrix_is_its_cofactor_matrix():
    # Rank 2: det(A + eps E_00) = 4 eps, so d det / dA_00 = 4 (the cofactor). Debian's torch 1.13
    # returns zeros here; central differences agree with zkynet.
    a = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]])
    g = cg.grad(la.det)(a)
    np.testing.assert_allclose(g, [[4.0, 4.0, -4.0], [-2.0, -2.0, 2.0], [0.0, 0.0, 0.0]], atol=1e-12)
    ok, message = cg.gradcheck(la.det, [a])
    assert ok, message


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_matches_torch_values_and_symmetric_gradient(dtype):
    rng = np.random.default_rng(3)
    a = spd(rng, (2, 4, 4), dtype)
    compare(la.cholesky, torch.linalg.cholesky, [a], dtype)
    compare(lambda x: la.cholesky(x, upper=True), lambda x: torch.linalg.cholesky(x, upper=True), [a], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_solve_matches_torch(dtype):
    rng = np.random.default_rng(4)
    l = np.linalg.cholesky(spd(rng, (2, 3, 3), np.float64)).astype(dtype)
    b = rng.normal(size=(2, 3, 2)).astype(dtype)
    compare(la.cholesky_solve, torch.cholesky_solve, [b, l], dtype)
    u = np.ascontiguousarray(np.swapaxes(l, -1, -2))
    compare(lambda b, u: la.cholesky_solve(b, u, upper=True), lambda b, u: torch.cholesky_solve(b, u, upper=True),
            [b, u], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("unit", [False, True])
def test_solve_triangular_matches_torch(dtype, upper, left, unit):
    rng = np.random.default_rng(5)
    a = well_conditioned(rng, (2, 3, 3), dtype)
    b = rng.normal(size=(2, 3, 2) if left else (2, 2, 3)).astype(dtype)
    compare(lambda a, b: la.solve_triangular(a, b, upper=upper, left=left, unitriangular=unit),
            lambda a, b: torch.linalg.solve_triangular(a, b, upper=upper, left=left, unitriangular=unit),
            [a, b], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_matches_torch_eigenvalues_and_sign_free_eigenvector_functions(dtype):
    rng = np.random.default_rng(6)
    a = sym(rng, (2, 4, 4), dtype)
    c = np.array([1.0, -2.0, 3.0, 0.5], dtype=dtype)
    compare(lambda x: la.eigh(x).eigenvalues, lambda x: torch.linalg.eigh(x).eigenvalues, [a], dtype)
    compare(lambda x: (lambda r: (r.eigenvalues, op.matmul(r.eigenvectors * c, op.transpose(r.eigenvectors))))(la.eigh(x)),
            lambda x: (lambda r: (r.eigenvalues, (r.eigenvectors * torch.tensor(c)) @ r.eigenvectors.mT))(torch.linalg.eigh(x)),
            [a], dtype)
    compare(lambda x: op.square(la.eigh(x, UPLO="U").eigenvectors),
            lambda x: torch.linalg.eigh(x, UPLO="U").eigenvectors ** 2, [a], dtype)


def test_eigh_with_equal_eigenvalues_eigenvalue_gradients_work_eigenvector_ones_raise():
    a = np.diag([1.0, 1.0, 2.0])
    compare(la.eigvalsh, torch.linalg.eigvalsh, [a], np.float64)
    with pytest.raises(la.LinAlgError, match="linalg.eigh.*equal"):
        cg.grad(lambda x: op.sum(la.eigh(x).eigenvectors * np.arange(9.0).reshape(3, 3)))(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 3, 5), (4, 4)])
def test_svd_matches_torch_singular_values_and_sign_free_products(dtype, shape):
    rng = np.random.default_rng(7)
    a = rng.normal(size=shape).astype(dtype)
    k = min(shape[-2:])
    c = np.arange(1.0, k + 1.0, dtype=dtype)
    compare(la.svdvals, torch.linalg.svdvals, [a], dtype)
    compare(lambda x: (lambda r: (r.S, op.matmul(r.U * c, r.Vh), op.square(r.U), op.square(r.Vh)))(la.svd(x)),
            lambda x: (lambda r: (r.S, (r.U * torch.tensor(c)) @ r.Vh, r.U ** 2, r.Vh ** 2))(
                torch.linalg.svd(x, full_matrices=False)),
            [a], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 3, 5), (4, 4)])
def test_qr_matches_torch(dtype, shape):
    rng = np.random.default_rng(8)
    a = rng.normal(size=shape).astype(dtype)
    compare(lambda x: tuple(la.qr(x)), lambda x: tuple(torch.linalg.qr(x)), [a], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_norms_match_torch(dtype):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(2, 3, 4)).astype(dtype)
    for ord in [2, 1, np.inf, -np.inf, 3]:
        compare(lambda v: la.vector_norm(v, ord, dim=-1), lambda v: torch.linalg.vector_norm(v, ord, dim=-1), [x], dtype)
    compare(lambda v: la.vector_norm(v, keepdim=True), lambda v: torch.linalg.vector_norm(v, keepdim=True), [x], dtype)
    for ord in ["fro", "nuc", 2, -2, 1, -1, np.inf, -np.inf]:
        compare(lambda m: la.matrix_norm(m, ord), lambda m: torch.linalg.matrix_norm(m, ord), [x], dtype)
    compare(la.norm, torch.linalg.norm, [x], dtype)
    compare(lambda m: la.norm(m[0], "nuc"), lambda m: torch.linalg.norm(m[0], "nuc"), [x], dtype)
    compare(lambda m: la.norm(m[0], 1), lambda m: torch.linalg.norm(m[0], 1), [x], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_matrix_exp_matches_torch(dtype, scale):
    rng = np.random.default_rng(11)
    compare(la.matrix_exp, torch.linalg.matrix_exp, [(scale * rng.normal(size=(2, 4, 4))).astype(dtype)], dtype)


def test_a_zero_vector_has_a_zero_norm_gradient_as_in_torch():
    compare(la.vector_norm, torch.linalg.vector_norm, [np.zeros(3)], np.float64)


def test_gradients_pass_gradcheck():
    rng = np.random.default_rng(10)
    a = well_conditioned(rng, (2, 3, 3), np.float64)
    for f in [la.inv, la.det, lambda x: la.solve(x, np.ones((3, 2))),
              lambda x: la.cholesky((x + op.transpose(x)) * 0.5 + 6.0 * np.eye(3)),
              lambda x: la.qr(x).R, lambda x: la.svd(x).S]:
        ok, message = cg.gradcheck(f, [a])
        assert ok, message


def test_a_singular_matrix_raises_linalgerror_naming_the_operator_and_batch_element():
    a = np.stack([np.eye(2), np.array([[1.0, 2.0], [2.0, 4.0]])])
    with pytest.raises(la.LinAlgError, match=r"linalg.solve: A \(2,2,2\), batch element 1: the matrix is singular"):
        la.solve(a, np.ones((2, 2, 1)))
    with pytest.raises(RuntimeError, match="linalg.inv"):  # LinAlgError is a RuntimeError, as torch's
        la.inv(a)


def test_a_matrix_not_positive_definite_names_the_leading_minor():
    with pytest.raises(la.LinAlgError, match="the leading minor of order 2 is not positive-definite"):
        la.cholesky(np.array([[1.0, 2.0], [2.0, 1.0]]))


def test_shape_errors_name_the_operator_and_shapes():
    from zkynet._zkynet import ShapeError
    with pytest.raises(ShapeError, match=r"linalg.inv: A \(2,3\) must be a batch of square matrices"):
        la.inv(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"linalg.solve: A \(3,3\) and B \(2,1\)"):
        la.solve(np.eye(3), np.ones((2, 1)))


def test_results_are_named_tuples_like_torch_return_types():
    q, r = la.qr(np.eye(3))
    assert la.qr(np.eye(3)).R.value.shape == (3, 3)
    u, s, vh = la.svd(np.eye(2))
    assert np.asarray(la.eigh(np.eye(2)).eigenvalues.value).shape == (2,)


def test_nan_and_inf_inputs_behave_as_in_torch():
    a = np.array([[1.0, np.nan], [np.nan, 2.0]])
    for f, tf in [(lambda m: la.solve(m, np.ones(2)), lambda m: torch.linalg.solve(m, torch.ones(2, dtype=m.dtype))),
                  (la.inv, torch.linalg.inv), (la.det, torch.linalg.det), (la.eigvalsh, torch.linalg.eigvalsh),
                  (lambda m: la.qr(m).R, lambda m: torch.linalg.qr(m).R)]:
        np.testing.assert_array_equal(np.asarray(f(a).value), tf(torch.tensor(a)).numpy())
    with pytest.raises(la.LinAlgError, match="NaN"):
        la.svdvals(a)
    with pytest.raises(la.LinAlgError, match="not positive-definite"):
        la.cholesky(np.array([[1.0, np.inf], [np.inf, 2.0]]))

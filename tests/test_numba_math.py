"""The numba backend's arithmetic exp (it replaces libm's so that loops vectorise) against
NumPy's exp, in ulps, and its special values."""
import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit  # noqa: E402

from nnkit.backends._numba_kernels import exp32, exp64, sigmoid32, sigmoid64  # noqa: E402


@njit(error_model="numpy")
def _apply32(x, out):
    for i in range(x.size):
        out[i] = exp32(x[i])


@njit(error_model="numpy")
def _apply64(x, out):
    for i in range(x.size):
        out[i] = exp64(x[i])


@njit(error_model="numpy")
def _sigmoids(x32, out32, x64, out64):
    for i in range(x32.size):
        out32[i] = sigmoid32(x32[i])
    for i in range(x64.size):
        out64[i] = sigmoid64(x64[i])


def _inputs(lo, hi, dtype):
    rng = np.random.default_rng(7)
    return np.concatenate([rng.uniform(lo, hi, 200_000), np.geomspace(1e-12, hi, 20_000),
                           -np.geomspace(1e-12, -lo, 20_000)]).astype(dtype)


@pytest.mark.parametrize("dtype, apply, lo, hi, max_ulp", [
    (np.float32, _apply32, -87.0, 88.0, 4.0),
    (np.float64, _apply64, -708.0, 708.0, 2.0),
])
def test_exp_within_a_few_ulp_of_numpy(dtype, apply, lo, hi, max_ulp):
    x = _inputs(lo, hi, dtype)
    out = np.empty_like(x)
    apply(x, out)
    ref = np.exp(x.astype(np.float64))  # float64 exp of float32 inputs: ~exact for float32
    ulp = np.spacing(ref.astype(dtype)).astype(np.float64)
    assert np.max(np.abs(out - ref) / ulp) <= max_ulp


@pytest.mark.parametrize("dtype, apply, lo, hi", [
    (np.float32, _apply32, -87.0, 88.0), (np.float64, _apply64, -708.0, 708.0)])
def test_exp_special_values(dtype, apply, lo, hi):
    x = np.array([0.0, -0.0, lo - 1, hi + 1, -np.inf, np.inf, np.nan], dtype=dtype)
    out = np.empty_like(x)
    apply(x, out)
    np.testing.assert_array_equal(out[:6], [1.0, 1.0, 0.0, np.inf, 0.0, np.inf])
    assert np.isnan(out[6])  # a diverged run must stay NaN, not become inf or 0


def test_sigmoid_matches_reference_formula_and_keeps_nan():
    z = np.concatenate([np.linspace(-100, 100, 20_001), [np.nan, -np.inf, np.inf]])
    out32, out64 = np.empty(z.size, np.float32), np.empty(z.size)
    _sigmoids(z.astype(np.float32), out32, z, out64)
    ref = 1.0 / (1.0 + np.exp(-z[:-3]))
    ref32 = 1.0 / (1.0 + np.exp(-z[:-3].astype(np.float32).astype(np.float64)))
    np.testing.assert_allclose(out64[:-3], ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(out32[:-3], ref32, rtol=1e-6, atol=1e-37)  # 0 below -87
    for out in (out32, out64):
        assert np.isnan(out[-3]) and out[-2] == 0.0 and out[-1] == 1.0

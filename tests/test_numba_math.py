"""The numba backend's arithmetic exp and tanh (they replace libm's so that loops
vectorise) against NumPy's or a more precise result, in ulps, and their special values."""
import numpy as np
import pytest

pytest.importorskip("numba")
from numba import njit  # noqa: E402

from nnkit.backends._numba_kernels import (exp32, exp64, sigmoid32, sigmoid64,  # noqa: E402
                                           log1p64, tanh32, tanh64)


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


@njit(error_model="numpy")
def _tanhs(x32, out32, x64, out64):
    for i in range(x32.size):
        out32[i] = tanh32(x32[i])
    for i in range(x64.size):
        out64[i] = tanh64(x64[i])


def _tanh_of(x32, x64):
    out32, out64 = np.empty_like(x32), np.empty_like(x64)
    _tanhs(x32, out32, x64, out64)
    return out32, out64


def _ulps(out, ref, dtype):
    """|out - ref| in units in the last place of ``dtype`` at ``ref`` (extended
    precision), the unit of ref's binade (rounded toward zero: just below a power of 2
    the unit above would halve the error)."""
    near = ref.astype(dtype)
    below = np.where(np.abs(near.astype(np.longdouble)) > np.abs(ref),
                     np.nextafter(near, np.zeros_like(near)), near)
    ulp = np.spacing(np.abs(below)).astype(np.longdouble)
    return np.abs(out.astype(np.longdouble) - ref) / ulp


def test_tanh_within_a_few_ulp_of_an_extended_precision_reference():
    """tanh32/tanh64 (an expm1 from exp's range reduction: loops over them vectorise)
    against tanh in more precision than the result, from 1e-12 (where 1 - exp(-2|z|)
    would lose every digit) to where tanh rounds to 1; densely just below z = 0.125 (a
    result at the foot of its binade: an expm1 evaluated as r times a sum from 1 was 4.1
    ulp off there), and every float32 in [0.11, 0.13]."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(-25, 25, 200_000), np.geomspace(1e-12, 25, 40_000),
                        -np.geomspace(1e-12, 25, 40_000), rng.normal(size=40_000) * 1e-3,
                        np.linspace(0.1245, 0.12566, 400_000),
                        [0.12464911325386213, 0.12476028605283368, 0.12554080890015834]])
    lo, hi = np.float32(0.11).view(np.int32), np.float32(0.13).view(np.int32)
    every32 = np.arange(lo, hi + 1, dtype=np.int32).view(np.float32)
    x32 = np.concatenate([x.astype(np.float32), every32, np.float32([1e-40, -3e-42])])
    out32, out64 = _tanh_of(x32, x.astype(np.float64))
    for out, xs, dtype in ((out32, x32, np.float32), (out64, x, np.float64)):
        ref = np.tanh(xs.astype(np.longdouble))  # x86: 64-bit mantissa; elsewhere >= float64
        assert float(np.max(_ulps(out, ref, dtype))) <= 3.0, dtype


def test_tanh_special_values():
    x = [0.0, -0.0, 30.0, -30.0, np.inf, -np.inf, 1e-300, -1e-300, np.nan]
    out32, out64 = _tanh_of(np.array(x, np.float32), np.array(x, np.float64))
    for out in (out32, out64):
        np.testing.assert_array_equal(out[:6], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0])
        assert np.signbit(out[1]) and not np.signbit(out[0])
        assert np.isnan(out[8])  # a diverged run stays NaN
    assert out64[6] == 1e-300 and out64[7] == -1e-300  # tiny inputs keep their value


@njit(error_model="numpy")
def _log1ps(x, out):
    for i in range(x.size):
        out[i] = log1p64(x[i])


def test_log1p_within_a_few_ulp_of_an_extended_precision_reference():
    """log1p64 (binary cross-entropy's softplus: log1p(exp(-|z|)), u in (0, 1]) from
    subnormal u, where 1 + u rounds to 1, to 1e300, and down towards -1."""
    rng = np.random.default_rng(5)
    u = np.concatenate([rng.uniform(0, 1, 200_000), np.exp(-rng.uniform(0, 700, 100_000)),
                        np.geomspace(5e-324, 1, 40_000), np.geomspace(1, 1e300, 40_000),
                        -np.geomspace(1e-300, 0.999, 40_000)])
    out = np.empty_like(u)
    _log1ps(u, out)
    assert float(np.max(_ulps(out, np.log1p(u.astype(np.longdouble)), np.float64))) <= 3.0


def test_log1p_special_values():
    x = np.array([0.0, -0.0, np.inf, np.nan, -1.0, -2.0, -np.inf])
    out = np.empty_like(x)
    _log1ps(x, out)
    np.testing.assert_array_equal(out[:3], [0.0, -0.0, np.inf])
    assert np.signbit(out[1]) and np.isnan(out[3]) and out[4] == -np.inf
    assert np.isnan(out[5]) and np.isnan(out[6])

"""One named symbol, nnkit_cblas_sgemm, bound at import to MKL's cblas_sgemm (if the
`mkl` wheel is installed and NNKIT_BLAS != openblas) or else to SciPy's bundled
OpenBLAS (scipy_cblas_sgemm, the library np.dot inside numba already uses). The numba
kernels reference the name only, so cache=True kernels are identical for both.
Run: NNKIT_BLAS=openblas|mkl NUMBA_CACHE_DIR=/tmp/mkl/nbcache2 venv/bin/python proto_switch.py"""
import ctypes, glob, os
import numpy as np
import scipy, scipy.linalg.cython_blas  # loads SciPy's OpenBLAS
import llvmlite.binding as llb
from numba import njit, types


def _bind():
    want = os.environ.get("NNKIT_BLAS", "auto")
    if want in ("auto", "mkl"):
        import sys
        for d in (os.path.join(sys.prefix, "lib"),):
            for so in sorted(glob.glob(os.path.join(d, "libmkl_rt.so*"))):
                lib = ctypes.CDLL(so)
                return "mkl", lib, lib.cblas_sgemm
        if want == "mkl":
            raise ImportError("libmkl_rt not found: pip install mkl")
    so = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so"))[0]
    lib = ctypes.CDLL(so)
    return "openblas", lib, lib.scipy_cblas_sgemm


BLAS, _lib, _fn = _bind()
llb.add_symbol("nnkit_cblas_sgemm", ctypes.cast(_fn, ctypes.c_void_p).value)
_i, _f, _p = types.int32, types.float32, types.uintp
_sgemm = types.ExternalFunction("nnkit_cblas_sgemm",
                                types.void(_i, _i, _i, _i, _i, _i, _f, _p, _i, _p, _i, _f, _p, _i))


@njit(cache=True)
def gemm(A, ta, B, tb, C):
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    _sgemm(np.int32(101), np.int32(112 if ta else 111), np.int32(112 if tb else 111),
           np.int32(M), np.int32(N), np.int32(K), np.float32(1.0), A.ctypes.data,
           np.int32(A.shape[1]), B.ctypes.data, np.int32(B.shape[1]), np.float32(0.0),
           C.ctypes.data, np.int32(N))


@njit(cache=True)
def npdot_tn(A, B, C):
    np.dot(A.T, B, C)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    X = rng.random((512, 784), dtype=np.float32)
    G = rng.standard_normal((512, 256)).astype(np.float32)
    C1 = np.empty((784, 256), np.float32); C2 = np.empty_like(C1)
    gemm(X, True, G, False, C1)
    npdot_tn(X, G, C2)
    print(BLAS, "cache hits", sum(gemm.stats.cache_hits.values()),
          "bitwise == np.dot in numba:", np.array_equal(C1, C2),
          "rel diff", float(np.abs(C1 - C2).max() / np.abs(C2).max()))

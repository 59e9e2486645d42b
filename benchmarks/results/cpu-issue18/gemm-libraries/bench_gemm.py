"""sgemm GFLOP/s at the nnkit mnist / large step shapes, several BLAS libraries,
interleaved rounds, best-of.  Run with /tmp/mkl/venv/bin/python.

Shapes are row-major (C-order) like the numba blas path: NN = A @ B, TN = A.T @ B
(A stored as K x M C-array), NT = A @ B.T (B stored N x K).
"""
import ctypes, os, sys, time, json
import numpy as np
LIB = os.environ.get('LIB', '')
import scipy.linalg.blas as slb
if 'torch' in LIB:
    import torch
else:
    class _T:
        @staticmethod
        def set_num_threads(n): pass
    torch = _T()
from numba import njit

VENV_LIB = "/tmp/mkl/venv/lib"
ROUNDS = int(os.environ.get("ROUNDS", 7))
TARGET_S = float(os.environ.get("TARGET_S", 0.03))
SLEEP = float(os.environ.get("SLEEP", 0.25))   # let spinning pools go idle between libs

SHAPES = [  # name, op, M, N, K
    ("mnist fwd X@W0 512x784 @784x256", "NN", 512, 256, 784),
    ("mnist dW0 X.T@G0 784x512 @512x256", "TN", 784, 256, 512),
    ("mnist fwd A0@W1 512x256 @256x10", "NN", 512, 10, 256),
    ("mnist dW1 A0.T@G1 256x512 @512x10", "TN", 256, 10, 512),
    ("mnist dA0 G1@W1.T 512x10 @10x256", "NT", 512, 256, 10),
    ("large NN 1024^3", "NN", 1024, 1024, 1024),
    ("large TN 1024^3", "TN", 1024, 1024, 1024),
    ("large NT 1024^3", "NT", 1024, 1024, 1024),
]

rng = np.random.default_rng(0)


def operands(op, M, N, K):
    A = rng.standard_normal((K, M) if op == "TN" else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if op == "NT" else (K, N)).astype(np.float32)
    C = np.zeros((M, N), np.float32)
    a = A.T if op == "TN" else A
    b = B.T if op == "NT" else B
    return A, B, a, b, C


# --- libraries -----------------------------------------------------------------------
libs = {}


def np_dot(A, B, a, b, C, op):
    return lambda: np.dot(a, b, out=C)
libs["numpy OpenBLAS 0.3.31"] = np_dot


@njit(cache=False)
def _nb_dot(a, b, c):
    np.dot(a, b, c)


def nb_dot(A, B, a, b, C, op):
    _nb_dot(a, b, C)
    return lambda: _nb_dot(a, b, C)
libs["numba np.dot (scipy OpenBLAS 0.3.30)"] = nb_dot


def scipy_sgemm(A, B, a, b, C, op):
    # row-major C = a @ b  <=>  col-major C^T = b^T a^T; A.T / B.T are F-views, no copy
    At, Bt = A.T, B.T  # F-contiguous
    ta = 1 if op == "TN" else 0   # C^T = b^T @ a^T: first operand b^T
    tb = 1 if op == "NT" else 0
    Ct = C.T
    # sgemm(alpha, a, b, beta, c, trans_a, trans_b, overwrite_c)
    return lambda: slb.sgemm(1.0, Bt, At, 0.0, Ct, trans_a=tb, trans_b=ta, overwrite_c=1)
libs["scipy.linalg.blas.sgemm (OpenBLAS 0.3.30)"] = scipy_sgemm


def torch_mm(nthreads):
    def make(A, B, a, b, C, op):
        ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(C)
        def f():
            torch.mm(ta, tb, out=tc)
        f.nthreads = nthreads
        return f
    return make
libs["torch.mm (MKL 2024.2) 2 thr"] = torch_mm(2)
libs["torch.mm 1 thr"] = torch_mm(1)

# cblas via ctypes: (layout, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
CBLAS_ARGS = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
              ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]


def cblas_maker(fn):
    fn.argtypes = CBLAS_ARGS
    fn.restype = None
    def make(A, B, a, b, C, op):
        M, N = C.shape
        K = a.shape[1]
        ta = 112 if op == "TN" else 111
        tb = 112 if op == "NT" else 111
        pa, pb, pc = A.ctypes.data, B.ctypes.data, C.ctypes.data
        lda, ldb = A.shape[1], B.shape[1]
        keep = (A, B, C)  # hold the arrays: the closure only has raw pointers
        def f():
            fn(101, ta, tb, M, N, K, 1.0, pa, lda, pb, ldb, 0.0, pc, N)
        f.keep = keep
        return f
    return make


if "MKL" in LIB:
    mkl = ctypes.CDLL(os.path.join(VENV_LIB, "libmkl_rt.so.3"), mode=ctypes.RTLD_GLOBAL)
    layer = os.environ.get("MKL_THREADING_LAYER", "INTEL (default)")
    libs[f"MKL 2026.2 cblas_sgemm ({layer})"] = cblas_maker(mkl.cblas_sgemm)
    MKL = mkl
else:
    MKL = None


def fortran_maker(fn):
    P = ctypes.POINTER
    fn.restype = None
    def make(A, B, a, b, C, op):
        # row-major C = a @ b  <=>  col-major C^T = b^T a^T
        M, N = C.shape
        K = a.shape[1]
        ta = b"T" if op == "NT" else b"N"   # first operand: stored B read col-major
        tb = b"T" if op == "TN" else b"N"
        cargs = [ctypes.c_char_p(ta), ctypes.c_char_p(tb), ctypes.byref(ctypes.c_int(N)),
                 ctypes.byref(ctypes.c_int(M)), ctypes.byref(ctypes.c_int(K)),
                 ctypes.byref(ctypes.c_float(1.0)), ctypes.c_void_p(B.ctypes.data),
                 ctypes.byref(ctypes.c_int(B.shape[1])), ctypes.c_void_p(A.ctypes.data),
                 ctypes.byref(ctypes.c_int(A.shape[1])), ctypes.byref(ctypes.c_float(0.0)),
                 ctypes.c_void_p(C.ctypes.data), ctypes.byref(ctypes.c_int(N))]
        def f():
            fn(*cargs)
        f.keep = (A, B, C, cargs)
        f.nthreads = 2
        return f
    return make


if LIB.startswith("torch sgemm_"):
    import torch as _torch
    torch = _torch
    _tc = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    libs["torch sgemm_ (libtorch_cpu export)"] = fortran_maker(_tc.sgemm_)

so32 = "/tmp/mkl/venv/lib/python3.11/site-packages/scipy_openblas32/lib/libscipy_openblas.so"
if '0.3.34' in LIB:
  ob34 = ctypes.CDLL(so32)
  libs["scipy-openblas32 0.3.34 cblas"] = cblas_maker(ob34.scipy_cblas_sgemm)

try:
    if 'blis' not in LIB: raise ImportError
    import blis.py as blispy

    def blis_gemm(A, B, a, b, C, op):
        x = A if op != "TN" else A  # blis.py.gemm wants the stored arrays + trans flags
        return lambda: blispy.gemm(A, B, out=C, trans1=(op == "TN"), trans2=(op == "NT"),
                                   beta=0.0)
    libs["cython-blis 1.3.4 (1 thr)"] = blis_gemm
except ImportError:
    pass


def main():
    only = LIB
    names = [n for n in libs if n == only] or [n for n in libs if n.startswith(only)]
    ops = {}
    ref = {}
    for sname, op, M, N, K in SHAPES:
        A, B, a, b, C = operands(op, M, N, K)
        ref[sname] = (a.astype(np.float64) @ b.astype(np.float64))
        for n in names:
            Cn = np.zeros_like(C)
            f = libs[n](A, B, a, b, Cn, op)
            ops[(n, sname)] = (f, Cn)
    # correctness
    for sname, op, M, N, K in SHAPES:
        for n in names:
            f, Cn = ops[(n, sname)]
            torch.set_num_threads(getattr(f, "nthreads", 2))
            f()
            r = ref[sname]
            err = np.abs(Cn - r).max() / np.abs(r).max()
            assert err < 1e-5, (n, sname, err)
    best = {k: float("inf") for k in ops}
    t_start = time.time()
    for rnd in range(ROUNDS):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for n in order:
            time.sleep(SLEEP)
            for sname, op, M, N, K in SHAPES:
                f, Cn = ops[(n, sname)]
                torch.set_num_threads(getattr(f, "nthreads", 2))
                for _ in range(3):
                    f()
                t0 = time.perf_counter(); f(); one = time.perf_counter() - t0
                reps = max(3, min(2000, int(TARGET_S / max(one, 1e-7))))
                # best of 3 blocks of `reps` calls
                for _ in range(3):
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        f()
                    dt = (time.perf_counter() - t0) / reps
                    best[(n, sname)] = min(best[(n, sname)], dt)
        print(f"round {rnd} done, load {os.getloadavg()}", file=sys.stderr, flush=True)
    out = {}
    w = max(len(n) for n in names)
    print(f"{'shape':38s} " + " | ".join(f"{n[:26]:>26s}" for n in names))
    for sname, op, M, N, K in SHAPES:
        fl = 2.0 * M * N * K
        row = []
        for n in names:
            g = fl / best[(n, sname)] / 1e9
            out[f"{n} || {sname}"] = {"s": best[(n, sname)], "gflops": g}
            row.append(f"{g:8.1f} ({best[(n, sname)]*1e6:8.1f}us)")
        print(f"{sname:38s} " + " | ".join(f"{r:>26s}" for r in row))
    print("load avg at end:", os.getloadavg(), "elapsed", round(time.time() - t_start, 1), "s")
    if MKL is not None:
        print("mkl_get_max_threads:", MKL.mkl_get_max_threads())
    json.dump(out, open(os.environ.get("OUT", "/tmp/mkl/gemm_results.json"), "w"), indent=1)


if __name__ == "__main__":
    main()

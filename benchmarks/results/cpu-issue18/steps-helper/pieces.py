import sys, time, statistics, numpy as np
from numba import njit
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup
from nnkit.backends import _numba_kernels as K

def tpc(fn, budget=0.4, repeats=9):
    fn(); t0=time.perf_counter(); fn(); once=max(time.perf_counter()-t0,1e-7)
    inner=max(1,int(budget/repeats/once)); ts=[]
    for _ in range(repeats):
        t0=time.perf_counter()
        for _ in range(inner): fn()
        ts.append((time.perf_counter()-t0)/inner)
    return min(ts)

@njit(error_model="numpy")
def sgd_all(Ws, bs, dWs, dbs, lr):
    for l in range(len(Ws)):
        K.sgd_update(Ws[l], dWs[l], lr)
        K.sgd_update_1d(bs[l], dbs[l], lr)

names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["mnist", "large"]
for name in names:
    w = WORKLOADS[name]
    net, X, Y, step = step_setup(w, "numba", "float32")
    st = net.train_state
    step()
    n = X.shape[0]
    Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = st.buffers(n).cache["numba_args"]
    A0 = As[0].copy(); G0 = Gs[0].copy(); A1 = As[-1].copy()
    def reset():
        As[0][:] = A0; Gs[0][:] = G0; As[-1][:] = A1
    r = {}
    r["call"] = tpc(lambda: K.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt)); reset()
    r["step_py"] = tpc(step); reset()
    r["bias_act"] = tpc(lambda: K.bias_activation(As[0], bs[0], acts[0], n)); reset()
    r["output"] = tpc(lambda: K.blas_output(As[-1], bs[-1], Y, acts[-1], loss, Gs[-1], dbs[-1], n)); reset()
    r["deriv_colsum"] = tpc(lambda: K.derivative_colsum(Gs[0], As[0], acts[0], dbs[0], n)); reset()
    r["sgd"] = tpc(lambda: sgd_all(Ws, bs, dWs, dbs, 0.0))
    el = r["bias_act"] + r["output"] + r["deriv_colsum"] + r["sgd"]
    print(name, "  ".join(f"{k} {v*1e3:.3f}" for k, v in r.items()), f" elementwise sum {el*1e3:.3f} ms", flush=True)

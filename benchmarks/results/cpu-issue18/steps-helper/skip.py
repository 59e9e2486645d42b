import sys, time, statistics, numpy as np
from numba import njit
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup
from nnkit.backends import _numba_kernels as K

def tpc(fn, budget=0.8, repeats=9):
    fn(); t0=time.perf_counter(); fn(); once=max(time.perf_counter()-t0,1e-7)
    inner=max(1,int(budget/repeats/once)); ts=[]
    for _ in range(repeats):
        t0=time.perf_counter()
        for _ in range(inner): fn()
        ts.append((time.perf_counter()-t0)/inner)
    return min(ts)

@njit(error_model="numpy")
def step_skip(X, Y, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs, opt, f):
    L = len(Ws)
    for l in range(L):
        Z = As[l][:nb]
        if l == 0:
            np.dot(X[:nb], Ws[0], Z)
        else:
            np.dot(As[l - 1][:nb], Ws[l], Z)
        if l < L - 1 and f[0]:
            K.bias_activation(Z, bs[l], acts[l], nb)
    loss = 0.0
    if f[1]:
        loss = K.blas_output(As[L - 1], bs[L - 1], Y, acts[L - 1], loss_kind, Gs[L - 1], dbs[L - 1], nb)
    for l in range(L - 1, -1, -1):
        G = Gs[l][:nb]
        if l == 0:
            np.dot(X[:nb].T, G, dWs[0])
        else:
            np.dot(As[l - 1][:nb].T, G, dWs[l])
            np.dot(G, Ws[l].T, Gs[l - 1][:nb])
            if f[2]:
                K.derivative_colsum(Gs[l - 1], As[l - 1], acts[l - 1], dbs[l - 1], nb)
    if f[3]:
        for l in range(L):
            K.sgd_update(Ws[l], dWs[l], lr)
            K.sgd_update_1d(bs[l], dbs[l], lr)
    return loss

names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["mnist", "large"]
for name in names:
    w = WORKLOADS[name]
    net, X, Y, step = step_setup(w, "numba", "float32")
    st = net.train_state
    step()
    n = X.shape[0]
    Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = st.buffers(n).cache["numba_args"]
    cases = {"all": (1,1,1,1), "gemm only": (0,0,0,0), "-bias_act": (0,1,1,1), "-output": (1,0,1,1), "-dc": (1,1,0,1), "-sgd": (1,1,1,0)}
    res = {k: [] for k in cases}
    res["kernel"] = []
    for rep in range(3):
        res["kernel"].append(tpc(lambda: K.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt)))
        for k, f in cases.items():
            f = np.array(f, dtype=np.bool_)
            res[k].append(tpc(lambda: step_skip(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt, f)))
    b = {k: min(v) for k, v in res.items()}
    print(name, "  ".join(f"{k} {v*1e3:.3f}" for k, v in b.items()))
    print("   in-step cost: " + "  ".join(f"{k[1:]} {(b['all']-v)*1e3:.3f}" for k, v in b.items() if k.startswith("-")), f" all-gemm {(b['all']-b['gemm only'])*1e3:.3f}", flush=True)

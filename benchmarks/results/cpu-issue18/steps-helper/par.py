import sys, time, statistics, numpy as np
from numba import njit, prange
import numba
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup
from nnkit.backends import _numba_kernels as K
from nnkit.backends._numba_kernels import activate, derivative, loss_term, loss_grad_term, loss_mean, update_sgd, SGD

NBLK = 8
def tpc(fn, budget=0.6, repeats=9):
    fn(); t0=time.perf_counter(); fn(); once=max(time.perf_counter()-t0,1e-7)
    inner=max(1,int(budget/repeats/once)); ts=[]
    for _ in range(repeats):
        t0=time.perf_counter()
        for _ in range(inner): fn()
        ts.append((time.perf_counter()-t0)/inner)
    return min(ts), statistics.median(ts)

@njit(error_model="numpy", parallel=True)
def bias_act_par(Z, b, act, nb):
    step = (nb + NBLK - 1) // NBLK
    for k in prange(NBLK):
        K.bias_activation_rows(Z, b, act, k * step, min(nb, (k + 1) * step))

@njit(error_model="numpy", parallel=True)
def dc_par(G, A, act, db, nb, P):
    m = A.shape[1]
    step = (nb + NBLK - 1) // NBLK
    for k in prange(NBLK):
        p = P[k]
        for j in range(m):
            p[j] = 0.0
        K.derivative_colsum_rows(G, A, act, p, k * step, min(nb, (k + 1) * step))
    for j in range(m):
        db[j] = 0.0
    for k in range(NBLK):
        for j in range(m):
            db[j] += P[k, j]

@njit(error_model="numpy", parallel=True)
def out_par(Z, b, Y, act, kind, G, db, nb, P, TT):
    m = Z.shape[1]
    step = (nb + NBLK - 1) // NBLK
    for k in prange(NBLK):
        p = P[k]; T = TT[k]
        for j in range(m):
            p[j] = 0.0; T[j] = 0.0
        i0 = k * step; i1 = min(nb, i0 + step)
        rows = max(1, 2048 // m)
        for a in range(i0, i1, rows):
            c = min(i1, a + rows)
            K.bias_activation_rows(Z, b, act, a, c)
            K.loss_rows(Z, Y, kind, G, T, nb, a, c)
            K.derivative_colsum_rows(G, Z, act, p, a, c)
    total = 0.0
    for j in range(m):
        db[j] = 0.0
    for k in range(NBLK):
        for j in range(m):
            db[j] += P[k, j]
            total += TT[k, j]
    return loss_mean(total, kind, nb)

@njit(error_model="numpy", parallel=True)
def sgd_par(W, dW, lr):
    for k in prange(W.shape[0]):
        for j in range(W.shape[1]):
            W[k, j] = update_sgd(W[k, j], dW[k, j], lr)

@njit(error_model="numpy")
def step_par(X, Y, nb, Ws, bs, acts, loss_kind, lr, As, Gs, dWs, dbs, opt, P, TT):
    L = len(Ws)
    for l in range(L):
        Z = As[l][:nb]
        if l == 0:
            np.dot(X[:nb], Ws[0], Z)
        else:
            np.dot(As[l - 1][:nb], Ws[l], Z)
        if l < L - 1:
            bias_act_par(Z, bs[l], acts[l], nb)
    loss = out_par(As[L - 1], bs[L - 1], Y, acts[L - 1], loss_kind, Gs[L - 1], dbs[L - 1], nb, P, TT)
    for l in range(L - 1, -1, -1):
        G = Gs[l][:nb]
        if l == 0:
            np.dot(X[:nb].T, G, dWs[0])
        else:
            np.dot(As[l - 1][:nb].T, G, dWs[l])
            np.dot(G, Ws[l].T, Gs[l - 1][:nb])
            dc_par(Gs[l - 1], As[l - 1], acts[l - 1], dbs[l - 1], nb, P)
    t = opt[2]
    t[0] += 1
    for l in range(L):
        sgd_par(Ws[l], dWs[l], lr)
        K.sgd_update_1d(bs[l], dbs[l], lr)
    return loss

names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["mnist", "large"]
print("threading layer after first use:", end=" ")
for name in names:
    w = WORKLOADS[name]
    net, X, Y, step = step_setup(w, "numba", "float32")
    st = net.train_state
    step()
    n = X.shape[0]
    Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = st.buffers(n).cache["numba_args"]
    mx = max(W.shape[1] for W in Ws)
    P = np.zeros((NBLK, mx), np.float32); TT = np.zeros((NBLK, mx))
    l1 = K.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt)
    l2 = step_par(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt, P, TT)
    if name == names[0]: print(numba.threading_layer())
    print(name, "loss", l1, l2)
    for rep in range(3):
        a = tpc(lambda: K.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt))
        b = tpc(lambda: step_par(X, Y, n, Ws, bs, acts, loss, 0.0, As, Gs, dWs, dbs, opt, P, TT))
        print(f"  serial {a[0]*1e3:.3f}/{a[1]*1e3:.3f}  parallel {b[0]*1e3:.3f}/{b[1]*1e3:.3f} ms (min/median)", flush=True)

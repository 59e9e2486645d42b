import sys, time, statistics, numpy as np
from numba import njit, prange
from nnkit.backends import _numba_kernels as K
from nnkit.backends._numba_kernels import derivative, activate, loss_term, loss_grad_term, loss_mean, SIGMOID, LINEAR, RELU, TANH, SQUARED_ERROR, MSE, BINARY_CROSSENTROPY

def tpc(fn, budget=0.3, repeats=9):
    fn(); t0=time.perf_counter(); fn(); once=max(time.perf_counter()-t0,1e-7)
    inner=max(1,int(budget/repeats/once)); ts=[]
    for _ in range(repeats):
        t0=time.perf_counter()
        for _ in range(inner): fn()
        ts.append((time.perf_counter()-t0)/inner)
    return min(ts)

@njit(inline="always", error_model="numpy")
def _rows1(Z, b, Y, act, kind, G, db, nb, T):
    m = Z.shape[1]
    for i in range(nb):
        for j in range(m):
            z = activate(Z[i, j] + b[j], act)
            Z[i, j] = z
            y = Y[i, j]
            T[j] += loss_term(z, y, kind, 0.0)
            g = derivative(loss_grad_term(z, y, kind, nb, 0.0), z, act)
            G[i, j] = g
            db[j] += g

@njit(inline="always", error_model="numpy")
def _rows3(Z, b, Y, act, kind, G, db, nb, T):
    m = Z.shape[1]
    for i in range(nb):
        z_ = Z[i]; y_ = Y[i]; g_ = G[i]
        for j in range(m):
            z_[j] = activate(z_[j] + b[j], act)
        for j in range(m):
            T[j] += loss_term(z_[j], y_[j], kind, 0.0)
        for j in range(m):
            z = z_[j]
            g = derivative(loss_grad_term(z, y_[j], kind, nb, 0.0), z, act)
            g_[j] = g
            db[j] += g

@njit(inline="always", error_model="numpy")
def _rows2(Z, b, Y, act, kind, G, db, nb, T):
    m = Z.shape[1]
    for i in range(nb):
        z_ = Z[i]; y_ = Y[i]; g_ = G[i]
        for j in range(m):
            z = activate(z_[j] + b[j], act)
            z_[j] = z
            g = derivative(loss_grad_term(z, y_[j], kind, nb, 0.0), z, act)
            g_[j] = g
            db[j] += g
        for j in range(m):
            T[j] += loss_term(z_[j], y_[j], kind, 0.0)

def make(rows):
    @njit(error_model="numpy")
    def out(Z, b, Y, act, kind, G, db, nb):
        m = Z.shape[1]
        T = np.zeros(m)
        for j in range(m):
            db[j] = 0.0
        if kind == MSE:
            rows(Z, b, Y, act, MSE, G, db, nb, T)
        elif kind == BINARY_CROSSENTROPY:
            rows(Z, b, Y, act, BINARY_CROSSENTROPY, G, db, nb, T)
        else:
            rows(Z, b, Y, act, SQUARED_ERROR, G, db, nb, T)
        total = 0.0
        for j in range(m):
            total += T[j]
        return loss_mean(total, kind, nb)
    return out

def make_sig(rows):
    @njit(error_model="numpy")
    def out(Z, b, Y, act, kind, G, db, nb):
        m = Z.shape[1]
        T = np.zeros(m)
        for j in range(m):
            db[j] = 0.0
        if act == SIGMOID:
            rows(Z, b, Y, SIGMOID, SQUARED_ERROR, G, db, nb, T)
        else:
            rows(Z, b, Y, act, SQUARED_ERROR, G, db, nb, T)
        total = 0.0
        for j in range(m):
            total += T[j]
        return loss_mean(total, kind, nb)
    return out


@njit(error_model="numpy")
def _b_act(Z, b, act, i0, i1):
    m = Z.shape[1]
    for i in range(i0, i1):
        for j in range(m):
            Z[i, j] = activate(Z[i, j] + b[j], act)

@njit(error_model="numpy")
def _b_loss(Z, Y, kind, G, T, nb, i0, i1):
    m = Z.shape[1]
    for i in range(i0, i1):
        for j in range(m):
            z = Z[i, j]; y = Y[i, j]
            T[j] += loss_term(z, y, kind, 0.0)
            G[i, j] = loss_grad_term(z, y, kind, nb, 0.0)

@njit(error_model="numpy")
def _b_dc(G, A, act, db, i0, i1):
    m = A.shape[1]
    for i in range(i0, i1):
        for j in range(m):
            g = derivative(G[i, j], A[i, j], act)
            G[i, j] = g
            db[j] += g

def makeB(block):
    @njit(error_model="numpy")
    def out(Z, b, Y, act, kind, G, db, nb):
        m = Z.shape[1]
        T = np.zeros(m)
        for j in range(m):
            db[j] = 0.0
        rows = max(1, block // m)
        for i0 in range(0, nb, rows):
            i1 = min(nb, i0 + rows)
            _b_act(Z, b, act, i0, i1)
            _b_loss(Z, Y, kind, G, T, nb, i0, i1)
            _b_dc(G, Z, act, db, i0, i1)
        total = 0.0
        for j in range(m):
            total += T[j]
        return loss_mean(total, kind, nb)
    return out

@njit(inline="always", error_model="numpy")
def _rows4(Z, b, Y, act, kind, G, db, nb, T):
    m = Z.shape[1]
    for i in range(nb):
        z_ = Z[i]; y_ = Y[i]; g_ = G[i]
        for j in range(m):
            z = activate(z_[j] + b[j], act)
            z_[j] = z
            y = y_[j]
            T[j] += loss_term(z, y, kind, 0.0)
            g = derivative(loss_grad_term(z, y, kind, nb, 0.0), z, act)
            g_[j] = g
            db[j] += g

def make_all(rows):
    @njit(error_model="numpy")
    def out(Z, b, Y, act, kind, G, db, nb):
        m = Z.shape[1]
        T = np.zeros(m)
        for j in range(m):
            db[j] = 0.0
        if kind == BINARY_CROSSENTROPY:
            rows(Z, b, Y, act, BINARY_CROSSENTROPY, G, db, nb, T)
        elif kind == MSE:
            if act == SIGMOID: rows(Z, b, Y, SIGMOID, MSE, G, db, nb, T)
            elif act == LINEAR: rows(Z, b, Y, LINEAR, MSE, G, db, nb, T)
            elif act == RELU: rows(Z, b, Y, RELU, MSE, G, db, nb, T)
            else: rows(Z, b, Y, TANH, MSE, G, db, nb, T)
        else:
            if act == SIGMOID: rows(Z, b, Y, SIGMOID, SQUARED_ERROR, G, db, nb, T)
            elif act == LINEAR: rows(Z, b, Y, LINEAR, SQUARED_ERROR, G, db, nb, T)
            elif act == RELU: rows(Z, b, Y, RELU, SQUARED_ERROR, G, db, nb, T)
            else: rows(Z, b, Y, TANH, SQUARED_ERROR, G, db, nb, T)
        total = 0.0
        for j in range(m):
            total += T[j]
        return loss_mean(total, kind, nb)
    return out

variants = {"cur": K.blas_output, "r1s": make_sig(_rows1), "r3s": make_sig(_rows3), "r4all": make_all(_rows4), "B1k": makeB(1024), "B4k": makeB(4096), "Binf": makeB(1<<40)}
rng = np.random.default_rng(0)
for dt in [np.float32]:
  for (n, m) in [(1024, 1024), (512, 256), (512, 10), (256, 10), (32, 4), (8, 1)]:
    for act, kind in [(SIGMOID, SQUARED_ERROR), (LINEAR, MSE), (RELU, SQUARED_ERROR)]:
        Z0 = rng.uniform(-2, 2, (n, m)).astype(dt); Y = rng.uniform(0, 1, (n, m)).astype(dt)
        b = rng.uniform(-1, 1, m).astype(dt)
        res = {}; outs = {}
        for name, f in variants.items():
            Z = Z0.copy(); G = np.empty_like(Z); db = np.empty(m, dt)
            l = f(Z, b, Y, act, kind, G, db, n)
            outs[name] = (l, Z.copy(), G.copy(), db.copy())
            res[name] = tpc(lambda: f(Z0.copy() if False else Z, b, Y, act, kind, G, db, n))
        l0, Zc, Gc, dbc = outs["cur"]
        ok = all(np.array_equal(o[1], Zc) and np.array_equal(o[2], Gc) and np.array_equal(o[3], dbc) and abs(o[0]-l0) <= 1e-12*abs(l0) for o in outs.values())
        print(f"{n}x{m} act{act} kind{kind} same={ok}: " + "  ".join(f"{k} {v*1e6:.2f}" for k, v in res.items()), flush=True)

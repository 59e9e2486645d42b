import time, threading, os, statistics, sys
import numpy as np
from concurrent.futures import ThreadPoolExecutor
import nnkit
from nnkit.backends import get_backend
from nnkit.backends.base import Backend
from nnkit.bench.workloads import WORKLOADS
MIN = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 18
pool = ThreadPoolExecutor(1)
local = threading.local()
def blocks(fn, n, *arrays):
    if getattr(local, "inside", False) or arrays[0].size < MIN or n < 2:
        return fn(*arrays)
    h = n // 2
    def run(part):
        local.inside = True
        try:
            fn(*part)
        finally:
            local.inside = False
    f = pool.submit(run, [a[:h] for a in arrays])
    run([a[h:] for a in arrays])
    f.result()
be = get_backend("numpy")
cls = type(be)
orig = {k: getattr(cls, k, None) for k in ("activation_forward", "activation_backward", "sgd_update", "loss_grad", "dense_forward")}
def act_fwd(self, Z, activation, out=None):
    if out is None: out = np.empty_like(Z)
    blocks(lambda z, o: Backend.activation_forward(self, z, activation, out=o), Z.shape[0], Z, out)
    return out
def dense_fwd(self, X, W, b, activation, out=None):
    out = np.matmul(X, W, out=out)
    def f(o):
        o += b
        Backend.activation_forward(self, o, activation, out=o)
    blocks(f, out.shape[0], out)
    return out
def act_bwd(self, dA, A, activation, out=None):
    if out is None: out = np.empty_like(A)
    blocks(lambda d, a, o: Backend.activation_backward(self, d, a, activation, out=o), A.shape[0], dA, A, out)
    return out
def sgd(self, params, grads, lr):
    for (W, b), (dW, db) in zip(params, grads):
        def f(w, d):
            d *= lr; w -= d
        blocks(f, W.shape[0], W, dW)
        db *= lr; b -= db
def lgrad(self, Yhat, Y, kind, out=None):
    if out is None: out = np.empty_like(Yhat)
    n = Yhat.shape[0]
    # scale by the full n: call the base on blocks with n fixed
    def f(yh, y, o):
        if kind == "squared_error":
            np.subtract(yh, y, out=o); o /= n
        else:
            Backend.loss_grad(self, yh, y, kind, out=o)  # (approximation ok for timing)
    blocks(f, n, Yhat, Y, out)
    return out
new = dict(activation_forward=act_fwd, activation_backward=act_bwd, sgd_update=sgd, loss_grad=lgrad, dense_forward=dense_fwd)
w = WORKLOADS[sys.argv[2] if len(sys.argv) > 2 else "large"]
X, Y = w.data("float32")
net = w.network(backend="numpy", dtype="float32")
Xd, Yd = net.prepare(X, Y)
st = net.train_state
def setmode(m):
    for k, v in (new if m else orig).items():
        if v is None: delattr(cls, k) if k in cls.__dict__ else None
        else: setattr(cls, k, v)
# correctness check
setmode(0); n0 = w.network(backend="numpy", dtype="float32"); n0.fit(X, Y, epochs=3, lr=0.01); p0 = n0.get_params()
setmode(1); n1 = w.network(backend="numpy", dtype="float32"); n1.fit(X, Y, epochs=3, lr=0.01); p1 = n1.get_params()
print("identical", all(np.array_equal(a, b) for (A, B), (C, D) in zip(p0, p1) for a, b in ((A, C), (B, D))))
res = {0: [], 1: []}
for r in range(6):
    for m in (0, 1):
        setmode(m)
        be.train_step(st, Xd, Yd, 0.01)
        ts = []
        for _ in range(8 if w.name == "large" else 60):
            t = time.perf_counter(); be.train_step(st, Xd, Yd, 0.01); ts.append(time.perf_counter() - t)
        res[m].append(min(ts))
        time.sleep(0.2)
for m in (0, 1):
    print(["serial", "threads"][m], "best %.3f ms median %.3f" % (1e3 * min(res[m]), 1e3 * statistics.median(res[m])))

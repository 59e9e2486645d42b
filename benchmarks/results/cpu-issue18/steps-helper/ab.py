import sys, time, statistics, importlib.util, numpy as np
spec = importlib.util.spec_from_file_location("nnkit.backends._numba_kernels_old", "/tmp/s/h18/old/_numba_kernels_old.py")
old = importlib.util.module_from_spec(spec); sys.modules[spec.name] = old; spec.loader.exec_module(old)
import nnkit
from nnkit.bench.workloads import WORKLOADS
from nnkit.bench.runner import step_setup, gemm_time
from nnkit.backends import _numba_kernels as new

def block(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner): fn()
    return (time.perf_counter() - t0) / inner

names = sys.argv[1].split(",") if len(sys.argv) > 1 else ["mnist", "large"]
for name in names:
    w = WORKLOADS[name]
    net, X, Y, step = step_setup(w, "numba", "float32")
    st = net.train_state; step()
    n = X.shape[0]
    Ws, bs, acts, loss, As, Gs, dWs, dbs, opt = st.buffers(n).cache["numba_args"]
    f = {"old": lambda: old.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.01, As, Gs, dWs, dbs, opt),
         "new": lambda: new.blas_train_step(X, Y, n, Ws, bs, acts, loss, 0.01, As, Gs, dWs, dbs, opt)}
    for g in f.values(): g(); g()
    inner = max(1, int(0.05 / block(f["new"], 3)))
    res = {"old": [], "new": [], "gemm": []}
    npbe = nnkit.get_backend("numpy")
    for r in range(9):
        for k in ("old", "new"):
            res[k].append(block(f[k], inner))
        if r % 3 == 0:
            res["gemm"].append(gemm_time(w, npbe, "float32"))
    med = {k: statistics.median(v) for k, v in res.items()}
    mn = {k: min(v) for k, v in res.items()}
    print(f"{name}: old {mn['old']*1e3:.3f}/{med['old']*1e3:.3f}  new {mn['new']*1e3:.3f}/{med['new']*1e3:.3f} ms (min/median)  gemm(bench) {mn['gemm']*1e3:.3f}  "
          f"%gemm old {100*mn['gemm']/med['old']:.0f} new {100*mn['gemm']/med['new']:.0f}  speedup {med['old']/med['new']:.3f}x", flush=True)

"""Driver: interleave one subprocess per library per round, keep best-of per shape."""
import json, os, subprocess, sys, time
PY = "/tmp/mkl/venv/bin/python"
LIBS = [
    ("numpy OpenBLAS 0.3.31", {}),
    ("numba np.dot (scipy OpenBLAS 0.3.30)", {}),
    ("scipy.linalg.blas.sgemm (OpenBLAS 0.3.30)", {}),
    ("torch.mm (MKL 2024.2) 2 thr", {}),
    ("torch.mm 1 thr", {}),
    ("MKL 2026.2 cblas_sgemm (INTEL (default))", {}),
    ("numba np.dot (scipy OpenBLAS 0.3.30) 1 thr", {"OPENBLAS_NUM_THREADS": "1"}),
    ("MKL 2026.2 cblas_sgemm (GNU)", {"MKL_THREADING_LAYER": "GNU"}),
    ("MKL 2026.2 cblas_sgemm (SEQUENTIAL)", {"MKL_THREADING_LAYER": "SEQUENTIAL"}),
    ("scipy-openblas32 0.3.34 cblas", {}),
    ("cython-blis 1.3.4 (1 thr)", {}),
    ("torch sgemm_ (libtorch_cpu export)", {}),
]
if os.environ.get("ONLY"):
    LIBS = [l for l in LIBS if any(s in l[0] for s in os.environ["ONLY"].split(","))]
ROUNDS = int(os.environ.get("NROUNDS", 5))
best, allv, loads = {}, {}, []
for r in range(ROUNDS):
    order = LIBS[r % len(LIBS):] + LIBS[:r % len(LIBS)]
    for name, env in order:
        e = dict(os.environ, LIB=name.split(" (INTEL")[0].split(" (GNU")[0].split(" (SEQ")[0] if name.startswith("MKL") else name.replace(" 1 thr", "") if "OpenBLAS 0.3.30) 1 thr" in name else name,
                 ROUNDS="1", SLEEP="0", OUT=f"/tmp/mkl/_r.json", **env)
        p = subprocess.run(["nice", "-n", os.environ.get("NICE", "5"), PY, "/tmp/mkl/bench_gemm.py"], env=e, capture_output=True, text=True)
        if p.returncode:
            print(name, p.stderr[-2000:]); continue
        res = json.load(open("/tmp/mkl/_r.json"))
        for k, v in res.items():
            shape = k.split(" || ")[1]
            key = (name, shape)
            allv.setdefault(key, []).append(v["gflops"])
            best[key] = max(best.get(key, 0), v["gflops"])
    loads.append(os.getloadavg())
    print(f"round {r} load {os.getloadavg()}", flush=True)
shapes = list(dict.fromkeys(s for _, s in best))
names = [n for n, _ in LIBS]
print("best-of GFLOP/s (median in brackets)")
print("| shape | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
import statistics
for s in shapes:
    print(f"| {s} | " + " | ".join(f"{best.get((n,s),0):.0f} ({statistics.median(allv.get((n,s),[0])):.0f})" for n in names) + " |")
print("loads", loads)
json.dump({f"{n} || {s}": v for (n, s), v in allv.items()}, open(os.environ.get("SAVE", "/tmp/mkl/gemm_rounds.json"), "w"), indent=1)

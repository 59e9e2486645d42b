"""Sweeps past one process, measured in one run: per-chunk overhead of a Dask cluster,
2 local Dask workers against the in-process sweep, and successive halving's cost.

Run: ``python benchmarks/sweep_scaling.py [--quick] [--json PATH]`` (not part of pytest;
needs ``pip install -e ".[dask]"``). All sweeps: numba backend, float32, full batch.

1. Per-chunk overhead: sweeps of 1 epoch cut into 8 and into 40 chunks of s configurations,
   on a local cluster of 2 worker processes (one thread each), final losses only, and the
   same in this process; from the slopes, overhead = cluster wall per chunk x workers -
   in-process time per chunk: the worker-time a chunk costs beyond its training (submit +
   transfer + gather).
2. Rate: OR gate 2-2-1, 65,536 nets x 5,000 epochs, final losses only (record_every=
   "final"), in this process and on the 2 workers, same chunks; net-epochs per second.
3. Halving: eta=3 over 1,024 configurations (256 rates x 4 seeds) x 5,000 epochs on the
   OR gate (2-2-1 sigmoid) and xor (2-4-1 tanh/sigmoid, binary cross-entropy): net-epochs
   against the full sweep's, and whether both pick the same best configuration.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

import nnkit


def or_net():
    return nnkit.Network([nnkit.Dense(2, 2, "sigmoid"), nnkit.Dense(2, 1, "sigmoid")],
                         dtype="float32", seed=0, backend="numba")


def xor_net():
    return nnkit.Network([nnkit.Dense(2, 4, "tanh"), nnkit.Dense(4, 1, "sigmoid")],
                         loss="binary_crossentropy", dtype="float32", seed=0,
                         backend="numba")


def timed(fn, repeat=1):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def chunk_overhead(client, workers, sizes, few=8, many=40, repeat=3):
    """Per-chunk cost from the slope between sweeps of ``few`` and ``many`` chunks of s
    configurations (1 epoch, final losses only): the per-sweep costs (scatter, warm-up)
    cancel out. Worker-time per chunk = wall slope x workers - in-process slope."""
    X, Y = nnkit.datasets.or_gate()
    rows = []
    for s in sizes:
        def wall(chunks, executor):
            args = dict(lr=np.geomspace(0.01, 10, s * chunks), epochs=1, chunk_size=s,
                        record_every="final", executor=executor)
            return timed(lambda: nnkit.sweep(or_net(), X, Y, **args), repeat)[0]
        wall(few, client)  # warm: kernels on the workers
        local = (wall(many, None) - wall(few, None)) / (many - few)
        remote_few = wall(few, client)
        remote = (wall(many, client) - remote_few) / (many - few)
        per_chunk = remote * workers - local
        start = remote_few - few * remote  # the per-sweep cost: scatter, warm-up, ...
        rows.append({"chunk_configs": s, "in_process_ms_per_chunk": local * 1e3,
                     "cluster_wall_ms_per_chunk": remote * 1e3,
                     "overhead_worker_ms_per_chunk": per_chunk * 1e3,
                     "cluster_start_ms": start * 1e3})
        print(f"  chunk of {s:>6} configs: in-process {local * 1e3:6.2f} ms/chunk, cluster "
              f"{remote * 1e3:6.2f} ms/chunk wall -> overhead {per_chunk * 1e3:6.2f} ms of "
              f"worker time per chunk; per-sweep start {start * 1e3:5.1f} ms", flush=True)
    return rows


def rate(client, configs, epochs, repeat=2):
    X, Y = nnkit.datasets.or_gate()
    args = dict(lr=np.geomspace(0.01, 50, configs // 4), seed=[0, 1, 2, 3], epochs=epochs,
                record_every="final")
    nnkit.sweep(or_net(), X, Y, **{**args, "epochs": 2})  # compile / load kernels
    nnkit.sweep(or_net(), X, Y, executor=client, **{**args, "epochs": 2})
    local = remote = np.inf
    for _ in range(repeat):  # interleaved: a busy machine slows both alike
        t, a = timed(lambda: nnkit.sweep(or_net(), X, Y, **args))
        local = min(local, t)
        t, b = timed(lambda: nnkit.sweep(or_net(), X, Y, executor=client, **args))
        remote = min(remote, t)
    same = bool(np.array_equal(a.loss, b.loss, equal_nan=True))
    work = configs * epochs
    row = {"configs": configs, "epochs": epochs, "chunks": a.chunks_run,
           "in_process_s": local, "cluster_s": remote,
           "in_process_M_net_epochs_s": work / local / 1e6,
           "cluster_M_net_epochs_s": work / remote / 1e6, "ratio": local / remote,
           "bit_identical": same}
    print(f"  {configs:,} nets x {epochs:,} epochs ({a.chunks_run} chunks): in-process "
          f"{row['in_process_M_net_epochs_s']:.1f} M net-epochs/s, 2 Dask workers "
          f"{row['cluster_M_net_epochs_s']:.1f} M ({row['ratio']:.2f}x); identical: {same}",
          flush=True)
    return row


def halving_cost(epochs, eta=3):
    rows = []
    for name, data, net, lrs in (("or", nnkit.datasets.or_gate(), or_net,
                                  np.geomspace(0.01, 50, 256)),
                                 ("xor", nnkit.datasets.xor_gate(), xor_net,
                                  np.geomspace(0.01, 20, 256))):
        X, Y = data
        args = dict(lr=lrs, seed=[0, 1, 2, 3], epochs=epochs, record_every="final")
        t_full, full = timed(lambda: nnkit.sweep(net(), X, Y, **args))
        t_half, half = timed(lambda: nnkit.sweep(net(), X, Y, halving=eta, **args))
        b_full, b_half = full.best(), half.best()
        row = {"task": name, "configs": len(full.configs), "epochs": epochs, "eta": eta,
               "min_epochs": max(1, epochs // eta ** 2), "survivors": int((~half.pruned).sum()),
               "net_epochs_full": int(full.net_epochs), "net_epochs_halving": int(half.net_epochs),
               "cost": half.net_epochs / full.net_epochs, "full_s": t_full, "halving_s": t_half,
               "best_full": full.configs[b_full], "best_halving": half.configs[b_half],
               "same_best": b_full == b_half,
               "best_loss_full": float(full.final_loss[b_full]),
               "best_loss_halving": float(half.final_loss[b_half]),
               "full_rank_of_halving_best": int(np.argsort(full.final_loss,
                                                           kind="stable").tolist().index(b_half))}
        print(f"  {name}: halving eta={eta} trains {row['cost']:.1%} of the full sweep's "
              f"net-epochs ({row['survivors']} to the end), best {row['best_halving']} vs full "
              f"{row['best_full']}: same {row['same_best']}", flush=True)
        rows.append(row)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sweeps (a smoke test)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import distributed
    workers = 2
    print(f"Python {sys.version.split()[0]}, numpy {np.__version__}, dask distributed "
          f"{distributed.__version__}, {os.cpu_count()} cores", flush=True)
    out = {"workers": workers}
    with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        print("per-chunk overhead (1 epoch, final losses only):")
        out["overhead"] = chunk_overhead(client, workers,
                                         [1, 64] if args.quick else [1, 64, 1024, 8192])
        print("rate (OR gate, final losses only):")
        out["rate"] = rate(client, 4096 if args.quick else 65536,
                           200 if args.quick else 5000)
    print("successive halving:")
    out["halving"] = halving_cost(300 if args.quick else 5000)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)


if __name__ == "__main__":
    main()

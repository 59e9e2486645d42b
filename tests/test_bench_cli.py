"""`nnkit bench` (the README's main job): it checks parity and writes sound results.
No timing is asserted (speed lives in the benchmarks, not in tests)."""
import json
import os
import subprocess
import sys

import nnkit
from nnkit.bench import WORKLOADS, execution_path, interleaved_times


def test_workload_flop_count_by_hand():
    # 2-2-1, batch 4: forward 2*4*(2*2 + 2*1) = 48, dW 48, dX of layer 2 only 2*4*2 = 16,
    # update 2 * 6 weights = 12.
    assert WORKLOADS["or-gate"].flops_per_step() == 124
    assert WORKLOADS["or-gate"].weights == 6


def test_execution_path_asks_the_backends_plan_or_says_dash():
    w = WORKLOADS["digits"]
    net = w.network(backend="numpy")

    class Planned:
        def plan(self, call, spec, rows, batch_size=None, configs=1, epochs=1):
            return f"{call} {spec.sizes} {rows} {batch_size} {configs} {epochs}"

    assert execution_path(object(), "step", net.spec, 256) == "-"
    assert (execution_path(Planned(), "sweep", net.spec, 256, configs=64, epochs=20)
            == "sweep (64, 64, 10) 256 None 64 20")
    path = execution_path(nnkit.get_backend("numpy"), "step", net.spec, 256)
    assert isinstance(path, str) and path


def test_interleaved_times_alternate_the_functions_and_keep_each_ones_best(monkeypatch):
    import nnkit.bench.runner as runner
    calls, settled = [], []
    durations = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 5.0, 5.0])}
    # each time_per_call "measures" its function's next duration
    monkeypatch.setattr(runner, "time_per_call",
                        lambda fn, sync, budget: (fn(), next(durations[calls[-1]]))[1])
    best = interleaved_times([lambda: calls.append("a"), lambda: calls.append("b")], None,
                             rounds=3, budget=0.1, settle=lambda: settled.append(1))
    assert calls == ["a", "b"] * 3  # in turn, round by round
    assert best == [1.0, 5.0] and settled == [1]


def test_bench_quick_agrees_across_backends(tmp_path):
    path = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-m", "nnkit", "bench", "--quick", "--workloads",
                          "or-gate", "--json", str(path)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "parity: max relative loss difference vs numpy" in out.stdout
    result = json.loads(path.read_text())
    rows = {r["backend"]: r for r in result["rows"]}
    assert {"numpy", "numba"} <= set(rows)
    assert rows["numpy"]["speedup_vs_numpy"] == 1.0
    assert all(r["parity"] <= 1e-4 for r in rows.values())
    assert rows["numba"]["step_s"] > 0 and rows["numba"]["epoch_s"] > 0
    assert {s["backend"] for s in result["sweeps"]} >= {"numpy", "numba"}
    assert all(isinstance(r["path"], str) and r["path"] for r in rows.values())
    assert all(isinstance(s["path"], str) and s["path"] for s in result["sweeps"])
    assert result["machine"]["cores"] >= 1


def test_bench_rejects_unknown_names():
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-m", "nnkit", "bench", "--workloads", "cifar"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "--workloads: expected names from" in out.stderr


def test_bench_rows_honour_workloads_and_percentages_stay_under_100():
    from nnkit.bench import report
    from nnkit.bench.runner import run_bench
    result = run_bench(["xor"], ["numpy"], ["float32"], quick=True, log=lambda msg: None)
    assert result["sweeps"] == []  # neither or-gate nor digits asked for
    assert {r["workload"] for r in result["rows"]} == {"xor"}
    peak = result["gemm_peaks"][0]
    assert peak["measurements"] == 3 and peak["min_flops"] <= peak["best_flops"]
    row = dict(result["rows"][0], gemm_s=1.0, step_s=0.5)  # matmuls "slower" than the step
    table = report.format_table({"rows": [row]})
    assert "-" in table.splitlines()[-1].split()
    assert report._percent(1.2, ".1f") == "noisy" and report._percent(0.5, ".1f") == "50.0"

"""`nnkit bench` (the README's main job): it checks parity and writes sound results.
No timing is asserted (speed lives in the benchmarks, not in tests)."""
import json
import os
import subprocess
import sys

from nnkit.workloads import WORKLOADS


def test_workload_flop_count_by_hand():
    # 2-2-1, batch 4: forward 2*4*(2*2 + 2*1) = 48, dW 48, dX of layer 2 only 2*4*2 = 16,
    # update 2 * 6 weights = 12.
    assert WORKLOADS["or-gate"].flops_per_step() == 124
    assert WORKLOADS["or-gate"].weights == 6


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
    assert result["machine"]["cores"] >= 1


def test_bench_rejects_unknown_names():
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    out = subprocess.run([sys.executable, "-m", "nnkit", "bench", "--workloads", "cifar"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "--workloads: expected names from" in out.stderr

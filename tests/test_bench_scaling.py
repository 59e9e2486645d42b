"""`nnkit bench --scaling`: the structure of its result on a tiny grid, the crossover
logic on planted data, and the picture. No timing is asserted."""
import json
import os
import subprocess
import sys

import pytest

import nnkit
from nnkit.bench import scaling as S


def _backends():
    names = ["numpy"]
    try:
        nnkit.get_backend("numba")
        names.append("numba")
    except nnkit.BackendUnavailableError:
        pass
    return names


def test_tiny_grid_structure():
    backends = _backends()
    res = S.run_scaling(backends, widths=(2, 128), batches=(1, 256), fixed_batch=32,
                        fixed_width=2, budget=0.002, reach=1, log=lambda msg: None)
    json.dumps(res)  # plain data
    assert set(res["axes"]) == {"width", "batch"}
    assert res["axes"]["width"] == {"values": [2, 128], "batch": 32}
    assert res["axes"]["batch"] == {"values": [1, 256], "width": 2}
    (roof,) = res["rooflines"]
    assert roof["device"] == "cpu" and roof["flops"] > 0 and roof["measurements"] == 2
    for axis, xs in (("width", (2, 128)), ("batch", (1, 256))):
        for name in backends:
            rows = [r for r in res["rows"] if r["axis"] == axis and r["series"] == name]
            assert [r["x"] for r in rows] == list(xs)
            for r in rows:
                assert r["step_s"] > 0 and r["gflops"] > 0 and not r["forced"]
                assert isinstance(r["path"], str) and r["path"]
                w = S.workload(r["width"], r["batch"])
                assert r["flops"] == w.flops_per_step() and r["weights"] == 20 * r["width"]
                be = nnkit.get_backend(name)
                assert r["path"] == be.plan("step", w.network(backend=name).spec, r["batch"])
    numpy_rows = [r for r in res["rows"] if r["backend"] == "numpy"]
    assert {r["path"] for r in numpy_rows} == {"reference"}
    assert all(r["series"] == "numpy" for r in numpy_rows)  # one path: nothing forced
    kinds = {c["kind"] for c in res["crossovers"]}
    if "numba" in backends:
        # 16-2-4 at 32 rows is generated, 16-128-4 at 32 rows blas: a planned hand-over
        planned = S.planned_paths(res, "width", "numba")
        assert planned == ["generated", "blas"]
        assert any(c["kind"] == "planned" and c["axis"] == "width" and c["x"] == 128
                   and (c["from"], c["to"]) == ("generated", "blas") for c in res["crossovers"])
        forced = {r["series"] for r in res["rows"] if r["backend"] == "numba"}
        assert {"numba:generated", "numba:blas"} <= forced
        assert "catch-up" in kinds and "pair" in kinds
    text = S.format_scaling(res)
    assert "width axis" in text and "batch axis" in text and "crossovers" in text
    assert "roofline (cpu)" in text


def test_overtake_finds_a_planted_crossover():
    xs = [1, 2, 4, 8, 16, 32, 64]
    a = [10.0] * 7
    b = [40, 9, 20, 8, 5, 4, 3]  # a blip at 2 that does not last; b for good from 8
    hit = S.overtake(xs, a, b)
    assert (hit["x"], hit["prev"], hit["state"]) == (8, 4, "hand-over")
    assert hit["ratio"] == pytest.approx(10 / 8)
    assert S.overtake(xs, a, [11] * 7)["state"] == "incumbent ahead"
    assert S.overtake(xs, a, [1] * 7)["state"] == "challenger ahead throughout"
    assert S.overtake(xs, a, [None] * 7)["state"] == "not measured together"
    # a near-tie counts with a margin; unmeasured points are skipped
    tie = [20, 20, 20, 10.4, None, 10.3, 10.2]
    assert S.overtake(xs, a, tie)["x"] is None
    assert S.overtake(xs, a, tie, margin=0.05)["x"] == 8
    assert S.path_changes(xs[:4], ["g", "g", None, "f"]) == [
        {"from": "g", "to": "f", "prev": 2, "x": 8}]


def _synthetic():
    """A result with a planted hand-over: numba plans generated up to 8 and blas from 16,
    but the generated path stays faster up to 32; numpy catches up from 64."""
    xs = [1, 2, 4, 8, 16, 32, 64]
    gen = [1, 1, 1, 2, 4, 8, 64]
    blas = [30, 30, 30, 30, 30, 30, 33]
    numpy = [40, 40, 40, 40, 40, 40, 34]
    rows = []
    for i, x in enumerate(xs):
        planned = "generated" if x <= 8 else "blas"
        t = gen[i] if planned == "generated" else blas[i]
        common = {"axis": "batch", "x": x, "width": 16, "batch": x, "weights": 320,
                  "flops": 1e4 * x}
        rows += [dict(common, backend="numpy", series="numpy", path="reference",
                      forced=False, step_s=numpy[i] * 1e-6, gflops=1e4 * x / numpy[i] / 1e3),
                 dict(common, backend="numba", series="numba", path=planned, forced=False,
                      step_s=t * 1e-6, gflops=1e4 * x / t / 1e3),
                 dict(common, backend="numba", series="numba:generated", path="generated",
                      forced=planned != "generated", step_s=gen[i] * 1e-6,
                      gflops=1e4 * x / gen[i] / 1e3),
                 dict(common, backend="numba", series="numba:blas", path="blas",
                      forced=planned != "blas", step_s=blas[i] * 1e-6,
                      gflops=1e4 * x / blas[i] / 1e3)]
    res = {"axes": {"batch": {"values": xs, "width": 16}}, "backends": ["numpy", "numba"],
           "rows": rows, "dtype": "float32", "network": {"n_in": 16, "n_out": 4,
                                                         "output": "sigmoid"},
           "rooflines": [{"device": "cpu", "backend": "numpy", "dtype": "float32",
                          "gemm": "1024^3", "flops": 1e11, "min_flops": 9e10,
                          "measurements": 2}]}
    res["crossovers"] = S.find_crossovers(res)
    return res


def test_find_crossovers_on_planted_data():
    res = _synthetic()
    by = {}
    for c in res["crossovers"]:
        by.setdefault(c["kind"], []).append(c)
    (planned,) = by["planned"]
    assert (planned["from"], planned["to"], planned["prev"], planned["x"]) == (
        "generated", "blas", 8, 16)
    (measured,) = by["measured"]
    assert (measured["from"], measured["to"], measured["prev"], measured["x"]) == (
        "generated", "blas", 32, 64)
    (pair,) = by["pair"]
    assert (pair["from"], pair["to"], pair["x"]) == ("generated", "blas", 64)
    assert [c["x"] for c in by["mismatch"]] == [16, 32]
    assert by["mismatch"][0]["ratio"] == pytest.approx(30 / 4)
    (catch,) = by["catch-up"]
    assert catch["x"] == 64 and catch["prev"] == 32  # 34 vs 33: within 5 %
    text = S.format_scaling(res)
    assert "numba: fastest measured path generated -> blas: from batch 64" in text


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    import nnkit.plot
    path = tmp_path / "scaling.png"
    fig = nnkit.plot.scaling(_synthetic())
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cli(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "NNKIT_BACKEND"}
    return subprocess.run([sys.executable, "-m", "nnkit", "bench", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_cli_scaling_writes_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    png, js = tmp_path / "s.png", tmp_path / "s.json"
    out = _cli("--scaling", "--quick", "--backends", "numpy", "--plot", str(png),
               "--json", str(js))
    assert out.returncode == 0, out.stderr
    assert "width axis" in out.stdout and "crossovers" in out.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads(js.read_text())
    assert res["axes"]["width"]["values"] == list(S.QUICK_WIDTHS)
    assert {r["series"] for r in res["rows"]} == {"numpy"}


def test_cli_scaling_argument_errors(tmp_path):
    out = _cli("--plot", str(tmp_path / "x.png"), timeout=120)
    assert out.returncode == 2 and "--plot: only with --scaling" in out.stderr
    out = _cli("--scaling", "--dtype", "both", timeout=120)
    assert out.returncode == 2 and "--dtype" in out.stderr
    out = _cli("--scaling", "--peers", "mxnet", timeout=120)
    assert out.returncode == 2 and "--peers" in out.stderr


def test_peers_are_measured_or_skipped(monkeypatch):
    from nnkit.bench import peers

    def make_fake(w, dtype):  # a peer with the makers' signature: numpy's own step
        net = w.network(backend="numpy", dtype=dtype)
        X, Y = net.prepare(*w.data(dtype))
        return (lambda: net.backend.train_step(net.train_state, X, Y, 0.01)), (lambda: None)

    def make_missing(w, dtype):
        raise ImportError("No module named 'nothere'")

    monkeypatch.setattr(peers, "make_fake", make_fake, raising=False)
    monkeypatch.setattr(peers, "make_missing", make_missing, raising=False)
    monkeypatch.setitem(S.PEERS, "torch", (("fake", "make_fake"), ("gone", "make_missing")))
    res = S.run_scaling(["numpy"], peers=["torch"], widths=(2, 8), batches=(1, 4),
                        budget=0.002, log=lambda msg: None)
    fake = [r for r in res["rows"] if r["series"] == "fake"]
    assert [(r["axis"], r["x"]) for r in fake] == [("width", 2), ("width", 8), ("batch", 1),
                                                   ("batch", 4)]
    assert all(r["step_s"] > 0 and r["path"] == "-" for r in fake)
    assert res["skipped"] == [{"series": "gone", "note": "skipped: No module named 'nothere'"}]
    assert "gone: skipped" in S.format_scaling(res)
    with pytest.raises(ValueError, match="sigmoid"):
        S.run_scaling(["numpy"], peers=["torch"], output="linear", widths=(2,), batches=(1,))

"""How cost grows with the work (``nnkit bench --scaling``): the training-step time and
GFLOP/s of a 2-layer network (``n_in``-h-``n_out``, sigmoid hidden layer, squared error)
against the hidden width h at a fixed batch, and against the batch at a fixed width, on
every usable backend (and the PyTorch/JAX peers when asked and installed).

Every point times ``backend.train_step(net.train_state, X, Y, lr)`` on ``net.prepare``d
data (the planned path, ``backend.plan("step", ...)``, named per point) and, for a backend
with several step paths, each of its step paths forced (``backend.prepare_step(path,
...)``, the callable ``train_step`` caches for the planned one) at the points within
``reach`` grid steps of where the planner picks that path: so each planned hand-over is
measured on both sides, and the measured crossovers can be set against the planning
thresholds. The roofline is the measured GEMM peak (``runner.gemm_peak``, best of a
measurement at the start and one at the end).

``run_scaling`` returns a dict for JSON; ``format_scaling`` prints it;
``nnkit.plot.scaling`` draws it.
"""
from __future__ import annotations

import math
import os
import time

from .runner import LR, _log, execution_path, gemm_peak, machine_info, time_per_call
from .workloads import Workload

# The default grids: powers of two. The width axis runs at batch FIXED_BATCH, the batch
# axis at width FIXED_WIDTH; with 16 inputs and 4 outputs both axes cross every numba
# step path (generated, fused, blas) on the way.
WIDTHS = tuple(2 ** k for k in range(1, 12))          # 2 ... 2048
BATCHES = tuple(2 ** k for k in range(0, 13))         # 1 ... 4096
QUICK_WIDTHS = (2, 8, 32, 64, 128, 512, 2048)
QUICK_BATCHES = (1, 8, 64, 128, 256, 1024, 4096)
N_IN, N_OUT = 16, 4
FIXED_BATCH = 32
FIXED_WIDTH = 16
BUDGET = 0.15        # seconds of timed calls per measurement
QUICK_BUDGET = 0.06
REACH = 3            # forced paths: measured this many grid steps beyond where planned
TIE = 0.05           # "caught up": within 5 %
MISMATCH = 0.10      # a planned path this much slower than the fastest measured is reported
PEERS = {"torch": (("torch eager", "make_torch_eager"), ("torch manual", "make_torch_manual")),
         "jax": (("jax jit", "make_jax_jit"),)}
# The numba planner's constants the measured crossovers are set against.


def workload(width, batch, n_in=N_IN, n_out=N_OUT, output="sigmoid"):
    """The 2-layer network of one point as a ``Workload`` (so the peers' makers and
    ``flops_per_step`` apply): sigmoid hidden layer, ``output`` activation."""
    return Workload(f"scaling-{n_in}-{width}-{n_out}-b{batch}", (n_in, width, n_out), batch,
                    hidden="sigmoid", output=output)


def step_paths(backend):
    """The named paths that can run a training step on ``backend`` (one for numpy)."""
    paths = getattr(backend, "paths", None) or {}
    return [p for p, calls in paths.items() if "step" in calls]


def _point_grid(axis, xs, fixed_batch, fixed_width):
    return [(x, fixed_batch) if axis == "width" else (fixed_width, x) for x in xs]


def _time_step(step, sync, budget):
    return time_per_call(step, sync, budget=budget, repeats=5)


def _plan_axis(name, dtype, grid, n_in, n_out, output):
    """The step path ``name`` plans at each (width, batch) of ``grid``."""
    import nnkit
    be = nnkit.get_backend(name)
    out = []
    for width, batch in grid:
        net = workload(width, batch, n_in, n_out, output).network(backend=name, dtype=dtype)
        out.append(execution_path(be, "step", net.spec, batch))
    return out


def _measure_point(name, dtype, w, planned, i, budget, reach):
    """Rows of one backend at point ``i`` of an axis (``w``): the planned step, and each
    other step path forced where it is planned within ``reach`` points of ``i``."""
    import nnkit
    be = nnkit.get_backend(name)
    net = w.network(backend=name, dtype=dtype)
    X, Y = net.prepare(*w.data(dtype))
    state = net.train_state
    row = {"backend": name, "series": name, "path": planned[i], "forced": False}
    main = _timed(row, w, lambda: be.train_step(state, X, Y, LR), be.synchronize, budget)
    rows = [main]
    paths = step_paths(be)
    if len(paths) < 2:
        return rows
    near = set(planned[max(0, i - reach):i + reach + 1])
    for p in paths:
        if p == planned[i]:  # the planned step, measured above
            rows.append(dict(main, series=f"{name}:{p}"))
            continue
        if p not in near:
            continue
        row = {"backend": name, "series": f"{name}:{p}", "path": p, "forced": True}
        try:
            fn = be.prepare_step(p, state, X.shape[0])
        except Exception as exc:  # a path that cannot serve this size: say so
            rows.append(_note(row, w, f"{type(exc).__name__}: {exc}"))
            continue
        rows.append(_timed(row, w, lambda fn=fn: fn(state, X, Y, LR), be.synchronize, budget))
    return rows


def _timed(row, w, step, sync, budget):
    row.update(width=w.sizes[1], batch=w.batch, weights=w.weights, flops=w.flops_per_step())
    try:
        t = _time_step(step, sync, budget)
    except Exception as exc:
        return _note(row, w, f"{type(exc).__name__}: {exc}")
    row.update(step_s=t, gflops=w.flops_per_step() / t / 1e9)
    return row


def _note(row, w, note):
    row.update(width=w.sizes[1], batch=w.batch, weights=w.weights, flops=w.flops_per_step(),
               note=note[:200])
    return row


def _peer_point(peers, dtype, w, budget, missing):
    """Rows of the peers at one point; a peer whose package is missing goes into
    ``missing`` once and is not tried again."""
    from . import peers as P
    rows = []
    for peer in peers:
        for series, maker in PEERS[peer]:
            if series in missing:
                continue
            row = {"backend": series, "series": series, "path": "-", "forced": False}
            try:
                step, sync = getattr(P, maker)(w, dtype)
            except ImportError as exc:
                missing[series] = f"skipped: {exc}"
                continue
            rows.append(_timed(row, w, step, sync, budget))
    return rows


def run_scaling(backends, dtype="float32", peers=(), quick=False, widths=None, batches=None,
                fixed_batch=FIXED_BATCH, fixed_width=FIXED_WIDTH, n_in=N_IN, n_out=N_OUT,
                output="sigmoid", budget=None, reach=REACH, log=_log):
    """Measure both axes on ``backends`` (and ``peers``); returns a dict for JSON:
    ``rows`` (one per axis, point and series: ``series`` is the backend or peer, or
    ``backend:path`` for a step path timed on its own, planned or forced; ``path`` the
    path planned or forced; ``step_s``, ``gflops``), ``axes``, ``rooflines``,
    ``crossovers`` (``find_crossovers``), ``thresholds`` (numba's), ``skipped`` peers,
    ``machine`` and the load average at the start and the end."""
    import nnkit
    t0 = time.perf_counter()
    load = [_loadavg()]
    widths = tuple(widths or (QUICK_WIDTHS if quick else WIDTHS))
    batches = tuple(batches or (QUICK_BATCHES if quick else BATCHES))
    budget = budget or (QUICK_BUDGET if quick else BUDGET)
    if output not in ("sigmoid", "linear"):
        raise ValueError(f"output: expected 'sigmoid' or 'linear', got {output!r}")
    for p in peers:
        if p not in PEERS:
            raise ValueError(f"peers: expected names from {tuple(PEERS)}, got {p!r}")
    peers = list(peers)
    if peers and output != "sigmoid":
        raise ValueError("the peers train sigmoid outputs: use output='sigmoid' with peers")
    devices = {}
    for name in backends:  # one roofline per device (numpy and numba share the CPU BLAS)
        devices.setdefault(nnkit.get_backend(name).device(), name)
    peaks = {dev: [] for dev in devices}

    def measure_peaks():
        for dev, name in devices.items():
            peaks[dev].append(gemm_peak(nnkit.get_backend(name), dtype, n=512 if quick else 1024))

    measure_peaks()
    rows, missing = [], {}
    axes = {"width": widths, "batch": batches}
    for axis, xs in axes.items():  # every series at a point, then the next point: a
        grid = _point_grid(axis, xs, fixed_batch, fixed_width)  # busy spell hits all alike
        planned = {name: _plan_axis(name, dtype, grid, n_in, n_out, output)
                   for name in backends}
        for i, (width, batch) in enumerate(grid):
            w = workload(width, batch, n_in, n_out, output)
            for name in backends:
                rows += [dict(r, axis=axis, x=r[axis])
                         for r in _measure_point(name, dtype, w, planned[name], i, budget,
                                                 reach)]
            if peers:  # the makers' networks have sigmoid outputs, as checked above
                rows += [dict(r, axis=axis, x=r[axis])
                         for r in _peer_point(peers, dtype, w, budget, missing)]
            log(f"  measured {axis} {xs[i]}: {w.sizes}, batch {batch}")
    measure_peaks()
    load.append(_loadavg())
    rooflines = [{"device": dev, "backend": devices[dev], "dtype": dtype,
                  "gemm": "1024^3" if not quick else "512^3", "flops": max(v),
                  "min_flops": min(v), "measurements": len(v)} for dev, v in peaks.items()]
    result = {"machine": machine_info(), "dtype": dtype,
              "network": {"n_in": n_in, "n_out": n_out, "hidden": "sigmoid", "output": output,
                          "loss": "squared_error"},
              "axes": {"width": {"values": list(widths), "batch": fixed_batch},
                       "batch": {"values": list(batches), "width": fixed_width}},
              "backends": list(backends), "peers": peers,
              "skipped": [{"series": s, "note": n} for s, n in missing.items()],
              "rooflines": rooflines, "rows": rows, "thresholds": planning_thresholds(backends),
              "budget_s": budget, "reach": reach,
              "loadavg_1min": {"start": load[0], "end": load[1]}}
    result["crossovers"] = find_crossovers(result)
    result["took_s"] = time.perf_counter() - t0
    return result


def _loadavg():
    """The 1-minute load average (None where the OS has none): a busy machine shows."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def planning_thresholds(backends):
    """Each backend's planning limits (``Backend.planning_thresholds``), where it has any."""
    import nnkit
    out = {}
    for name in backends:
        th = nnkit.get_backend(name).planning_thresholds()
        if th:
            out[name] = th
    return out


def _on_cpu(name):
    import nnkit
    return nnkit.get_backend(name).device() == "cpu"


# ------------------------------------------------------------------- crossovers
def overtake(xs, incumbent, challenger, margin=0.0):
    """Where ``challenger`` takes over from ``incumbent`` for good along ``xs``.

    ``incumbent``/``challenger`` are step times per x (None: not measured; points where
    either is missing are skipped). The challenger wins a point when its time is below
    the incumbent's x (1 + ``margin``) (``margin`` > 0 counts near-ties as caught up).
    Returns ``{"x", "prev", "ratio"}``: the first x from which the challenger wins every
    later point, ``prev`` the last point before it (which the incumbent won) and
    ``ratio`` the incumbent's time / the challenger's at x. Without such a hand-over,
    ``x`` is None and ``state`` says why: "incumbent ahead" (at the last point),
    "challenger ahead throughout" or "not measured together"."""
    pts = [(x, a, b) for x, a, b in zip(xs, incumbent, challenger) if _ok(a) and _ok(b)]
    wins = [b < a * (1 + margin) for _, a, b in pts]
    if not wins:
        return {"x": None, "prev": None, "ratio": None, "state": "not measured together"}
    if not wins[-1]:
        return {"x": None, "prev": None, "ratio": None, "state": "incumbent ahead"}
    if all(wins):
        return {"x": None, "prev": None, "ratio": None, "state": "challenger ahead throughout"}
    k = len(wins) - 1
    while wins[k - 1]:
        k -= 1
    x, a, b = pts[k]
    return {"x": x, "prev": pts[k - 1][0], "ratio": a / b, "state": "hand-over"}


def _ok(t):
    return isinstance(t, (int, float)) and math.isfinite(t) and t > 0


def path_changes(xs, paths):
    """The hand-overs along an axis, ``[{"from", "to", "prev", "x"}]``, of a sequence of
    path names (None entries skipped)."""
    seq = [(x, p) for x, p in zip(xs, paths) if p is not None]
    return [{"from": p0, "to": p1, "prev": x0, "x": x1}
            for (x0, p0), (x1, p1) in zip(seq, seq[1:]) if p0 != p1]


def series_times(result, axis):
    """The axis values and ``{series: [step_s or None per x]}``."""
    xs = result["axes"][axis]["values"]
    out = {}
    for r in result["rows"]:
        if r["axis"] == axis:
            out.setdefault(r["series"], [None] * len(xs))[xs.index(r["x"])] = r.get("step_s")
    return xs, out


def planned_paths(result, axis, backend):
    """The path ``backend`` plans at each point of ``axis`` (None where not measured)."""
    xs = result["axes"][axis]["values"]
    paths = [None] * len(xs)
    for r in result["rows"]:
        if r["axis"] == axis and r["series"] == backend:
            paths[xs.index(r["x"])] = r["path"]
    return paths


def fastest(*series):
    """Pointwise minimum of step-time series (None where none was measured)."""
    return [min((t for t in ts if _ok(t)), default=None) for ts in zip(*series)]


def best_paths(xs, forced):
    """The fastest measured path per point (None where fewer than two were measured)."""
    out = []
    for i in range(len(xs)):
        ts = [(forced[p][i], p) for p in forced if _ok(forced[p][i])]
        out.append(min(ts)[1] if len(ts) > 1 else None)
    return out


def find_crossovers(result):
    """The crossovers of both axes, each a dict with ``axis``, ``kind`` and ``what``:

    - per backend with several step paths: the planner's hand-overs (``planned``), the
      hand-overs of the fastest measured path (``measured``), where each later-planned
      path overtakes each earlier one, both forced (``pair``), and the points where the
      planned path is over ``MISMATCH`` slower than the fastest (``mismatch``);
    - ``catch-up``: where numpy comes within ``TIE`` of numba for good;
    - ``gpu``: where cupy beats the best CPU backend for good;
    - ``peer``: where a peer and the best nnkit backend overtake one another.
    """
    out = []
    backends = result["backends"]
    for axis in result["axes"]:
        xs, times = series_times(result, axis)
        for name in backends:
            paths = [s.split(":", 1)[1] for s in times if s.startswith(name + ":")]
            if len(paths) < 2:
                continue
            planned = planned_paths(result, axis, name)
            for ch in path_changes(xs, planned):
                out.append(dict(ch, axis=axis, backend=name, kind="planned",
                                what=f"{name} plans {ch['from']} -> {ch['to']}"))
            forced = {p: times[f"{name}:{p}"] for p in paths if f"{name}:{p}" in times}
            best = best_paths(xs, forced)
            for ch in path_changes(xs, best):
                out.append(dict(ch, axis=axis, backend=name, kind="measured",
                                what=f"{name}: fastest measured path {ch['from']} -> "
                                     f"{ch['to']}"))
            order = []  # the paths in the order the planner uses them along the axis
            for p in planned + list(forced):
                if p in forced and p not in order:
                    order.append(p)
            for i, a in enumerate(order):
                for b in order[i + 1:]:
                    hit = overtake(xs, forced[a], forced[b])
                    out.append(dict(hit, axis=axis, backend=name, kind="pair", **{"from": a},
                                    to=b, what=f"{name}: {b} overtakes {a} (timed side by "
                                                f"side)"))
            for i, x in enumerate(xs):
                p, q = planned[i], best[i]
                if p and q and p != q and p in forced and _ok(forced[p][i]):
                    loss = forced[p][i] / forced[q][i]
                    if loss > 1 + MISMATCH:
                        out.append({"axis": axis, "backend": name, "kind": "mismatch", "x": x,
                                    "planned": p, "best": q, "ratio": loss,
                                    "what": f"{name} plans {p}; {q} measured {loss:.2f}x "
                                            f"faster"})
        if "numpy" in times and "numba" in times:
            out.append(dict(overtake(xs, times["numba"], times["numpy"], margin=TIE),
                            axis=axis, kind="catch-up", what=f"numpy within {TIE:.0%} of "
                                                             f"numba or faster"))
        cpu = [n for n in backends if n in times and _on_cpu(n)]
        for gpu in [n for n in backends if n in times and not _on_cpu(n)]:
            if cpu:
                out.append(dict(overtake(xs, fastest(*(times[n] for n in cpu)), times[gpu]),
                                axis=axis, kind="gpu",
                                what=f"{gpu} beats the best CPU backend"))
        ours = fastest(*(times[n] for n in backends if n in times))
        for peer in [s for s in times if s not in backends and ":" not in s]:
            for a, b, what in ((ours, times[peer], f"{peer} beats the best nnkit backend"),
                               (times[peer], ours, f"the best nnkit backend beats {peer}")):
                hit = overtake(xs, a, b)
                if hit["x"] is not None:
                    out.append(dict(hit, axis=axis, kind="peer", what=what))
    return out


# ------------------------------------------------------------------- report
def _us(seconds):
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}us"
    return f"{seconds * 1e3:.3g}ms"


def format_scaling(result):
    """A table per axis (step time, GFLOP/s and planned path of each series; the forced
    paths' times) and the crossovers, as text."""
    out = []
    net = result["network"]
    for roof in result["rooflines"]:
        out.append(f"roofline ({roof['device']}): {roof['flops'] / 1e9:.1f} GFLOP/s, "
                   f"{roof['gemm']} GEMM on {roof['backend']} {roof['dtype']} (best of "
                   f"{roof['measurements']}; lowest {roof['min_flops'] / 1e9:.1f})")
    for s in result.get("skipped", []):
        out.append(f"{s['series']}: {s['note']}")
    for axis, spec in result["axes"].items():
        xs, times = series_times(result, axis)
        fixed = (f"batch {spec['batch']}" if axis == "width" else f"width {spec['width']}")
        out.append("")
        out.append(f"{axis} axis ({net['n_in']}-h-{net['n_out']}, sigmoid hidden, "
                   f"{net['output']} output, squared error, {result['dtype']}, {fixed}):")
        main = [s for s in times if ":" not in s]
        forced = [s for s in times if ":" in s]
        rows_by = {(r["series"], r["x"]): r for r in result["rows"] if r["axis"] == axis}
        cols = [("width", lambda x, r: str(r["width"])), ("batch", lambda x, r: str(r["batch"])),
                ("weights", lambda x, r: str(r["weights"])),
                ("rows*w", lambda x, r: str(r["weights"] * r["batch"]))]
        for s in main:
            cols += [(s, lambda x, r, s=s: _cell(rows_by.get((s, x)))),
                     ("GF/s", lambda x, r, s=s: _gflops(rows_by.get((s, x))))]
            if any(rows_by.get((s, x), {}).get("path", "-") != "-" for x in xs):
                cols.append(("path", lambda x, r, s=s: rows_by.get((s, x), {}).get("path", "-")))
        cols += [(s.replace(":", " "), lambda x, r, s=s: _cell(rows_by.get((s, x)), ""))
                 for s in forced]
        lines = [[h for h, _ in cols]]
        for x in xs:
            any_row = next((r for (s, xx), r in rows_by.items() if xx == x), None)
            if any_row is not None:
                lines.append([f(x, any_row) for _, f in cols])
        widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
        for j, line in enumerate(lines):
            out.append("  ".join(c.ljust(wd) for c, wd in zip(line, widths)).rstrip())
            if j == 0:
                out.append("  ".join("-" * wd for wd in widths))
    out.append("")
    out.append("crossovers (x: the first grid point from which it holds; prev: the last "
               "before):")
    for c in result["crossovers"]:
        out.append("  " + describe_crossover(c, result))
    for name, th in (result.get("thresholds") or {}).items():
        out.append(f"{name} planning thresholds: "
                   + ", ".join(f"{k} = {v}" for k, v in th.items()))
    return "\n".join(out)


def _cell(row, missing="-"):
    if row is None:
        return missing
    return "fails" if "note" in row else _us(row.get("step_s"))


def _gflops(row):
    return f"{row['gflops']:.3g}" if row and "gflops" in row else "-"


def _at(result, axis, x):
    spec = result["axes"][axis]
    width, batch = (x, spec["batch"]) if axis == "width" else (spec["width"], x)
    n = result["network"]
    weights = n["n_in"] * width + width * n["n_out"]
    return f"{axis} {x} (weights {weights}, rows {batch}, rows*weights {weights * batch})"


def describe_crossover(c, result):
    """One line for a crossover of ``find_crossovers``."""
    axis = c["axis"]
    if c["kind"] == "mismatch":
        return f"[{axis}] at {_at(result, axis, c['x'])}: {c['what']}"
    if c.get("x") is None:
        return f"[{axis}] {c['what']}: no hand-over on this grid ({c.get('state', '')})"
    tail = f", {c['ratio']:.2f}x there" if c.get("ratio") else ""
    return (f"[{axis}] {c['what']}: from {_at(result, axis, c['x'])}; "
            f"{axis} {c['prev']} before{tail}")

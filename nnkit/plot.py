"""Plots (the optional ``plot`` extra: ``pip install 'nnkit[plot]'``). Each returns a Figure."""
from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib.pyplot (Agg backend unless one is chosen), or ImportError saying what to
    install. Plotting code can call it first to fail before any work is done."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("nnkit.plot needs matplotlib: pip install 'nnkit[plot]'") from exc
    return plt


def cost_curve(curves, log=True, title="cost"):
    """Cost against epoch for one or several runs: ``{label: losses}``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(np.arange(len(losses)), losses, label=str(label))
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def decision_boundary(net, X, Y, resolution=200):
    """Network output over the plane of 2-D data, with the 0.5 contour and the samples."""
    plt = pyplot()
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y).reshape(len(X), -1)[:, 0]
    pad = 0.5
    xs = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, resolution)
    ys = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, resolution)
    gx, gy = np.meshgrid(xs, ys)
    out = net.predict(np.c_[gx.ravel(), gy.ravel()])[:, 0].reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contourf(gx, gy, out > 0.5, levels=1, colors=["#f4c2c2", "#c2f4c2"], alpha=0.8)
    ax.contour(gx, gy, out, levels=[0.5], colors="k")
    ax.scatter(X[:, 0], X[:, 1], c=np.where(Y > 0.5, "green", "red"), edgecolors="k")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title("decision boundary")
    fig.tight_layout()
    return fig


def lr_comparison(result):
    """A SweepResult's picture: final loss against learning rate (one line per seed)
    and the cost curves coloured by rate (seed 001's too small / good / too large)."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    seeds = sorted({c["seed"] for c in result.configs})
    for s in seeds:
        idx = [i for i, c in enumerate(result.configs) if c["seed"] == s]
        lrs = [result.configs[i]["lr"] for i in idx]
        final = np.where(result.diverged[idx], np.nan, result.loss[idx, -1])
        left.plot(lrs, final, marker="o", label=f"seed {s}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("learning rate")
    left.set_ylabel("final cost (diverged: missing)")
    left.legend()
    cmap = plt.get_cmap("viridis")
    all_lr = np.log10([c["lr"] for c in result.configs])
    span = max(all_lr.max() - all_lr.min(), 1e-12)
    for i, c in enumerate(result.configs):
        right.plot(result.loss[i], color=cmap((np.log10(c["lr"]) - all_lr.min()) / span),
                   lw=0.8)
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("cost (colour: log learning rate)")
    fig.tight_layout()
    return fig


def scaling(result):
    """``nnkit bench --scaling``'s picture (``nnkit.bench.scaling.run_scaling``'s result):
    GFLOP/s against hidden width and against batch, log-log, one line per backend or
    peer (a multi-path backend's forced paths thin, one line style per path), the GEMM
    roofline of each device as a horizontal line, the planned path hand-overs (grey,
    dashed) and the measured crossovers (coloured, dotted) as vertical lines between the
    two grid points they fall between."""
    plt = pyplot()
    axes_names = list(result["axes"])
    fig, axs = plt.subplots(1, len(axes_names), figsize=(6.5 * len(axes_names), 5.2),
                            squeeze=False)
    cmap = plt.get_cmap("tab10")
    series = []
    for r in result["rows"]:
        if r["series"] not in series:
            series.append(r["series"])
    main = [s for s in series if ":" not in s]
    colour = {s: cmap(i % 10) for i, s in enumerate(main)}
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))]
    style = {}
    for s in series:
        if ":" in s:
            style[s] = styles[sum(":" in t for t in style) % len(styles)]
    net = result["network"]
    marks = {"planned": ("0.45", "--", "plan"), "measured": ("tab:red", ":", "fastest"),
             "catch-up": ("tab:green", ":", ""), "gpu": ("tab:purple", ":", ""),
             "peer": ("tab:brown", ":", "")}
    for ax, axis in zip(axs[0], axes_names):
        spec = result["axes"][axis]
        for s in series:
            pts = sorted((r["x"], r["gflops"]) for r in result["rows"]
                         if r["axis"] == axis and r["series"] == s and "gflops" in r)
            if not pts:
                continue
            xs, ys = zip(*pts)
            if ":" in s:
                base, path = s.split(":", 1)
                ax.plot(xs, ys, ls=style[s], lw=1.1, alpha=0.75, color=colour.get(base, "0.5"),
                        marker=".", ms=4, label=f"{base} {path} (forced)")
            else:
                ax.plot(xs, ys, lw=2.2, marker="o", ms=4, color=colour[s], label=s)
        for k, roof in enumerate(result.get("rooflines", [])):
            ax.axhline(roof["flops"] / 1e9, color="k", lw=1, ls=("-", "-.")[k % 2])
            ax.annotate(f"GEMM roofline ({roof['device']}): {roof['flops'] / 1e9:.0f} GFLOP/s",
                        (0.01, roof["flops"] / 1e9), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=7)
        labels = {}  # x -> [(text, colour)], one stacked label per line position
        for c in result.get("crossovers", []):
            if c["axis"] != axis or c.get("x") is None or c["kind"] not in marks:
                continue
            colour_, ls, prefix = marks[c["kind"]]
            x = (c["prev"] * c["x"]) ** 0.5 if c.get("prev") else c["x"]  # between the two
            ax.axvline(x, color=colour_, ls=ls, lw=1.1)
            text = (f"{prefix}: {c['from']}→{c['to']}" if c["kind"] in ("planned", "measured")
                    else c["what"])
            labels.setdefault(x, []).append((text, colour_))
        for x, items in labels.items():
            for j, (text, colour_) in enumerate(items):
                ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"),
                            xytext=(-2 + 8 * j, 0), textcoords="offset points", rotation=90,
                            fontsize=6.5, color=colour_, ha="right", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden width h" if axis == "width" else "batch (rows)")
        ax.set_ylabel("GFLOP/s (training step)")
        ax.set_title(f"{net['n_in']}-h-{net['n_out']}, batch {spec['batch']}, {result['dtype']}"
                     if axis == "width" else
                     f"{net['n_in']}-{spec['width']}-{net['n_out']}, {result['dtype']}",
                     fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    axs[0][0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, 0.93))
    fig.tight_layout()
    return fig

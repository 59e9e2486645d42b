"""Plots (the optional ``plot`` extra: ``pip install 'nnkit[plot]'``). Each returns a Figure."""
from __future__ import annotations

import numpy as np


def _plt():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("nnkit.plot needs matplotlib: pip install 'nnkit[plot]'") from exc
    return plt


def cost_curve(curves, log=True, title="cost"):
    """Cost against epoch for one or several runs: ``{label: losses}``."""
    plt = _plt()
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
    plt = _plt()
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
    plt = _plt()
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

"""The roofline plot of ``bench --to-accuracy --plot``: each part of a step placed by its
arithmetic intensity (FLOPs per byte moved, :func:`~mlp_xp.cli.step_parts.step_work`) and
its achieved GFLOP/s, under each device's roofs (its measured large-matmul rate and copy
bandwidth). A point near the slanted roof is memory-bound, near the flat one
compute-bound; far below both, per-operation overhead (launches, the interpreter) holds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import _plt, _save

__all__ = ["roofline_plot"]

_MARKERS = {"matmuls": "o", "elementwise": "s", "optimizer": "^", "augmentation": "D"}


def roofline_plot(result: dict, path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    x = np.logspace(-2, 3, 200)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, d in enumerate(result["devices"]):
        color = colors[i % len(colors)]
        roof = np.minimum(d["matmul_gflops"], d["copy_gbs"] * x)
        ax.plot(x, roof, color=color, lw=1.5, label=f"{d['device']} roofs")
        for r in (r for r in result["rows"] if r["device"] == d["device"]):
            sec, work = r["parts"]["seconds"], r["parts"]["work"]
            for part, marker in _MARKERS.items():
                if sec.get(part) and work[part]["flops"]:
                    w = work[part]
                    px, py = w["flops"] / w["bytes"], w["flops"] / sec[part] / 1e9
                    ax.scatter(px, py, marker=marker, color=color, s=30)
                    ax.annotate(str(r["batch_size"]), (px, py), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")  # fmt: skip
    for part, marker in _MARKERS.items():
        ax.scatter([], [], marker=marker, color="gray", label=part)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte, float32)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("where a step's parts sit (labels: batch size)")
    return _save(fig, path)

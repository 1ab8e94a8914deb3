"""Pictures of a run (needs matplotlib, the ``plot`` extra); always rendered headless (Agg).

``learning_curves.png``  train/held-out loss and held-out accuracy per epoch
``confusion_matrix.png`` true vs predicted digit counts on the held-out split
``worst_digits.png``     the held-out digits the model got most confidently wrong
``reliability.png``      held-out accuracy against confidence in 15 bins, before and after
                         the calibration temperature, with each curve's ECE
``bench.png``            seconds per epoch vs batch size per device (from bench JSON)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..fileio import atomic_write_bytes

__all__ = [
    "learning_curves",
    "confusion_matrix",
    "worst_digits",
    "reliability_diagram",
    "bench_plot",
    "require_matplotlib",
]


def require_matplotlib(path=None):
    """A ConfigError naming the extra where matplotlib is missing (checked before the work
    whose picture goes to ``path``); returns ``path``."""
    _plt()
    return path


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install '.[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


#: Each task's loss, as the learning curves' axis names it, and its held-out score.
LOSS_LABELS = {
    "classify": "cross-entropy + L2",
    "binary": "binary cross-entropy + L2",
    "regress": "squared error / 2 + L2",
}


def learning_curves(history: dict, path, title: str = "", task: str = "classify") -> Path:
    """Losses (left) and the held-out score (right): accuracy, or for ``task="regress"``
    the mean squared error."""
    plt = _plt()
    epochs = history["epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, history["train_loss"], label="training loss (augmented batches)")
    if history.get("val_loss"):
        ax1.plot(epochs, history["val_loss"], label="held-out loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel(LOSS_LABELS.get(task, "loss"))
    ax1.set_yscale("log")
    ax1.grid(alpha=0.3)
    ax1.legend()
    if task == "regress":
        _score_panel(ax2, epochs, history.get("val_mse"), "held-out MSE", best=np.argmin)
    else:
        acc = history.get("val_accuracy")
        acc = 100 * np.asarray(acc) if acc else None
        _score_panel(ax2, epochs, acc, "held-out accuracy (%)", best=np.argmax)
        if acc is not None:
            ax2.set_ylim(max(0.0, acc.min() - 1), 100)
    fig.suptitle(title or "learning curves")
    return _save(fig, path)


def _score_panel(ax, epochs, values, label: str, best) -> None:
    """The held-out score per epoch, its best epoch marked; a note where none was kept."""
    if values is not None and len(values):
        values = np.asarray(values, dtype=np.float64)
        ax.plot(epochs, values, color="tab:green")
        i = int(best(values))
        unit = "%" if "%" in label else ""
        ax.annotate(
            f"best {values[i]:.{2 if unit else 4}f}{unit} (epoch {epochs[i]})",
            (epochs[i], values[i]),
            textcoords="offset points",
            xytext=(-60, -25 if best is np.argmax else 25),  # the label inside the axes
            arrowprops={"arrowstyle": "->"},
        )
    else:
        ax.text(0.5, 0.5, "no held-out split", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)


def reliability_diagram(curves: dict, path, title: str = "") -> Path:
    """Accuracy per confidence bin (each dot labelled with its count) against the diagonal, one
    curve per :class:`~mlp_xp.calibration.Reliability` in ``curves`` (label -> figures)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for label, r in curves.items():
        full = r.counts > 0
        (line,) = ax.plot(
            r.confidence[full],
            r.accuracy[full],
            marker="o",
            label=f"{label}: ECE {100 * r.ece:.2f}%",
        )
        for x, y, n in zip(r.confidence[full], r.accuracy[full], r.counts[full], strict=True):
            ax.annotate(f"{int(n)}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=6, color=line.get_color())  # fmt: skip
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title or "reliability on the held-out split (15 bins; digits per bin)")
    return _save(fig, path)


def confusion_matrix(
    true: np.ndarray, pred: np.ndarray, path, n_classes: int = 10, title: str = ""
) -> Path:
    plt = _plt()
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (true, pred), 1)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = ax.imshow(counts, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    threshold = counts.max() / 2
    for i in range(n_classes):
        for j in range(n_classes):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if counts[i, j] > threshold else "black",
                )
    ax.set_xticks(range(n_classes))
    ax.set_yticks(range(n_classes))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    acc = 100 * np.trace(counts) / max(1, counts.sum())
    ax.set_title(title or f"held-out confusion matrix ({acc:.2f}% correct of {counts.sum()})")
    return _save(fig, path)


def worst_digits(
    images: np.ndarray, true: np.ndarray, probs: np.ndarray, path, count: int = 24
) -> Path:
    """Grid of the lowest-probability-for-the-true-class digits, titled true -> predicted."""
    plt = _plt()
    p_true = probs[np.arange(len(true)), true]
    order = np.argsort(p_true, kind="stable")[:count]
    cols = 8
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.35, rows * 1.6))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), order, strict=False):
        pred = int(np.argmax(probs[i]))
        ax.imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=255)
        color = "tab:red" if pred != true[i] else "tab:green"
        ax.set_title(f"true {true[i]} -> {pred}\np={probs[i, pred]:.2f}", fontsize=8, color=color)
    fig.suptitle(
        "held-out digits the model got most wrong (true -> predicted, its probability)", fontsize=10
    )
    return _save(fig, path)


def bench_plot(bench: dict, path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for device, rows in _by_device(bench).items():
        rows = sorted(rows, key=lambda r: r["batch_size"])
        ax.plot(
            [r["batch_size"] for r in rows],
            [r["epoch_seconds"] for r in rows],
            marker="o",
            label=device,
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({r["batch_size"] for r in bench.get("results", [])})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.yaxis.set_major_formatter(_plt().FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(_plt().FormatStrFormatter("%g"))
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"seconds per epoch ({bench.get('samples', '?')} samples, median)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(f"{bench.get('network', 'MLP')}: training speed by device")
    return _save(fig, path)


def _by_device(bench: dict) -> dict:
    out: dict = {}
    for row in bench.get("results", []):
        out.setdefault(f"{row['backend']} ({row['device']})", []).append(row)
    return out

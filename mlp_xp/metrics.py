"""What a network scores on a labelled set: the mean loss, accuracy or MSE, and a
classifier's calibration error (:mod:`mlp_xp.calibration`), in batches on its device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .arrays import ArrayLike, device_array
from .calibration import Reliability, bin_sums
from .errors import DataError

if TYPE_CHECKING:
    from .model import MLP

__all__ = ["evaluate"]


def evaluate(
    model: MLP,
    X: ArrayLike,
    labels: ArrayLike,
    batch_size: int = 4096,
    *,
    check: bool = True,
    bins: bool = False,
) -> dict[str, Any]:
    """:meth:`mlp_xp.MLP.evaluate` (its description there)."""
    with model.backend.scope():
        X = model.check_input(X)
        labels = device_array(model.backend, labels, "labels")
        xp, n = model.xp, X.shape[0]
        if n == 0:
            raise DataError("evaluate: the inputs are empty (0 rows)")
        if check:
            labels = model.loss.check_targets(xp, labels, model.n_outputs, "evaluate's labels")
        if len(labels.shape) == 0 or labels.shape[0] != n:
            raise DataError(f"evaluate: labels of shape {tuple(labels.shape)} for {n} input rows")
        data_loss, hits, bin_totals = 0.0, 0.0, 0.0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)  # the Array API has no out-of-bounds slices
            xb, lb = X[start:stop, ...], labels[start:stop, ...]
            z = model._scaled(model.logits(xb))
            T = model.targets(lb)
            data_loss = data_loss + model.loss.value(xp, z, T) * xb.shape[0]
            if model.task == "classify":
                hits = hits + xp.sum(xp.astype(xp.argmax(z, axis=1) == lb, xp.float64))
                bin_totals = bin_totals + bin_sums(xp, z, lb)
            elif model.task == "binary":
                hit = (z[:, 0] > 0) == xp.astype(xp.reshape(lb, (-1,)), xp.bool)
                hits = hits + xp.sum(xp.astype(hit, xp.float64))
        out = {
            "loss": float(data_loss) / n + (float(model.penalty()) if model.l2 else 0.0),
            "samples": int(n),
        }
        if model.task == "regress":
            out["mse"] = 2.0 * float(data_loss) / n / model.n_outputs
        else:
            out["accuracy"] = float(hits) / n
        if model.task == "classify":  # 15-bin expected calibration error
            sums = model.backend.get(bin_totals)
            out["ece"] = Reliability.from_sums(sums).ece
            if bins:
                out["bins"] = sums.tolist()
        return out

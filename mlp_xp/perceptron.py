"""The primal perceptron algorithm (Rosenblatt; the notes' Algorithm 2).

For each sample ``(x_n, y_n)`` with ``y_n`` in {-1, +1}, in order: if
``y_n (w . x_n + b) <= 0`` (a mistake) then ``w <- w + eta y_n x_n`` and
``b <- b + eta y_n``. Epochs repeat until one has no mistakes (converged) or
``max_epochs`` is reached.

The notes test ``< 0``; this code tests ``<= 0``, as implementations do: from
the starting point ``w = 0, b = 0`` every margin is 0, so with ``< 0`` the first
pass would make no update and "converge" on the zero vector.

The pass over samples is sequential by definition of the algorithm, but it is
branch-free on the device: the mistake indicator multiplies the update, so no
value comes back to the host until the epoch's mistake count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .backends import get_backend
from .constraints import validate
from .errors import DataError

__all__ = ["perceptron", "PerceptronResult"]


@dataclass
class PerceptronResult:
    """Weights (host arrays), epochs run, and whether an epoch had no mistakes."""

    w: np.ndarray
    b: float
    epochs: int
    converged: bool
    mistakes: list = field(default_factory=list)  # per epoch

    def predict(self, X) -> np.ndarray:
        """Labels in {-1, +1} for host inputs X of shape (N, d)."""
        return np.where(np.asarray(X) @ self.w + self.b > 0, 1, -1)

    def message(self) -> str:
        if self.converged:
            return (
                f"converged in {self.epochs} epochs "
                f"({sum(self.mistakes)} mistakes corrected in all)"
            )
        return (
            f"did not converge in {self.epochs} epochs: {self.mistakes[-1]} mistakes in "
            "the last epoch (the data may not be linearly separable)"
        )


def perceptron(
    X,
    y,
    *,
    lr: float = 1.0,
    max_epochs: int = 100,
    seed: int | None = 0,
    backend=None,
    dtype: str = "float64",
) -> PerceptronResult:
    """Run the primal perceptron on host data.

    Parameters
    ----------
    X : array, shape (N, d)
    y : array, shape (N,)
        Labels in {-1, +1} or {0, 1} (0 is read as -1).
    lr : float
        Step eta (> 0). Convergence on separable data does not depend on it.
    max_epochs : int
    seed : int or None
        Each epoch visits the samples in an order drawn on the host from
        ``default_rng((seed, epoch))``; ``None`` keeps the given order.
    backend : str or Backend
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0 or y.shape != (X.shape[0],):
        raise DataError(
            f"perceptron needs X of shape (N, d) and y of shape (N,), got {X.shape} and {y.shape}"
        )
    labels = set(np.unique(y).tolist())
    if not labels <= {-1, 1} and not labels <= {0, 1}:
        raise DataError(f"perceptron labels must be -1/+1 or 0/1, got {sorted(labels)}")
    lr, max_epochs = validate("lr", lr), validate("max_epochs", max_epochs)
    y = np.where(y > 0, 1.0, -1.0)
    be = get_backend(backend)
    with be.scope():  # every array on the device asked for, not the current one
        Xd, yd = be.put((X, y), dtype)
        w, b, mistakes = _run(be, Xd, yd, lr, max_epochs, seed)
    return PerceptronResult(
        be.get(w).astype(np.float64), float(b), len(mistakes), mistakes[-1] == 0, mistakes
    )


def _run(be, Xd, yd, lr, max_epochs, seed):
    """The perceptron's epochs on device arrays: ``(w, b, mistakes per epoch)``."""
    xp, n_samples = be.xp, Xd.shape[0]
    w = xp.zeros((Xd.shape[1],), dtype=Xd.dtype, device=Xd.device)
    b = xp.zeros((), dtype=Xd.dtype, device=Xd.device)
    mistakes = []
    for epoch in range(max_epochs):
        order = (
            range(n_samples)
            if seed is None
            else np.random.default_rng((seed, epoch)).permutation(n_samples).tolist()
        )
        wrong = xp.zeros((), dtype=Xd.dtype, device=Xd.device)
        for n in order:
            x_n, y_n = Xd[n, :], yd[n]
            miss = xp.astype(y_n * (xp.sum(w * x_n) + b) <= 0, w.dtype)
            step = lr * miss * y_n
            w = w + step * x_n
            b = b + step
            wrong = wrong + miss
        mistakes.append(int(float(wrong)))
        if mistakes[-1] == 0:
            break
    return w, b, mistakes

"""A binary classifier with a sigmoid output and binary cross-entropy.

Two interleaved half-moons (not linearly separable), learned by a 2-16-1
network with ``task="binary"``; the sigmoid output is P(class 1).

    python examples/binary.py
"""

import numpy as np

from mlp_xp import MLP, fit


def moons(n: int, rng: np.random.Generator):
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    X = np.stack([x, y], axis=1) + rng.normal(0, 0.1, (n, 2))
    return X, (~upper).astype(np.int64)


def main(device: str = "cpu") -> dict:
    rng = np.random.default_rng(0)
    X, y = moons(600, rng)
    Xt, yt = moons(400, rng)
    model = MLP(2, (16,), 1, activation="relu", task="binary", backend=device, seed=0)
    fit(
        model,
        X,
        y,
        epochs=200,
        batch_size=32,
        optimizer="momentum",
        lr=0.05,
        seed=0,
        schedule="constant",
        augment="none",
    )
    Xd, yd = model.backend.put((Xt.astype(np.float32), yt))
    result = model.evaluate(Xd, yd)
    p = model.backend.get(model.predict_proba(Xd[:3, ...]))
    print(
        f"2-16-1 sigmoid-output network on two moons: test accuracy "
        f"{100 * result['accuracy']:.1f}%, binary cross-entropy {result['loss']:.3f}"
    )
    print(
        "P(class 1) for three test points:", np.round(p[:, 0], 3).tolist(), "true:", yt[:3].tolist()
    )
    return result


if __name__ == "__main__":
    main()

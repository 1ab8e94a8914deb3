"""The course notes' worked table: 4 samples, 3 features (x1 x2 x3), 2 one-hot classes (l1 l2).

1. One inference pass of a 3-layer feed-forward network, layer by layer, as the
   notes write it: x(0) -> a(1) -> x(1) -> a(2) -> x(2) -> a(3) -> y, with
   a(l) = x(l-1) W(l) + b(l) and x(l) = f(a(l)) (ReLU), y = softmax(a(3)).
2. Training "tunes the weight matrices and thresholds": full-batch gradient
   descent (the loss of all training samples) until the table is learned.
3. The primal perceptron on the same table: the two classes are linearly
   separable, so it converges to a separating w and b.

    python examples/notes_table.py
"""

import numpy as np

from mlp_xp import MLP, fit
from mlp_xp.perceptron import perceptron

#                  x1   x2   x3  l1 l2
TABLE = np.array(
    [[1.0, 0.1, 0.3, 1, 0], [0.1, 1.5, 1.2, 1, 0], [1.1, 1.1, 2.0, 0, 1], [0.2, 0.2, 0.3, 0, 1]]
)


def inference_pass(model, X) -> list:
    """The notes' pass through each layer: (name, array) pairs, on the host."""
    xp, backend = model.xp, model.backend
    steps, x = [("x(0)", X)], backend.put(X)
    for n, layer in enumerate(model.layers, start=1):  # n is the notes' layer index l
        a = x @ layer.params["W"] + layer.params["b"]
        x = layer.act.fn(xp, a)
        steps.append((f"a({n})", backend.get(a)))
        if n < len(model.layers):
            steps.append((f"x({n})", backend.get(x)))
    steps.append(("y", backend.get(model.forward(backend.put(X)))))
    return steps


def main(device: str = "cpu") -> dict:
    X, labels = TABLE[:, :3], TABLE[:, 3:].argmax(axis=1)
    model = MLP(3, (4, 4), 2, activation="relu", backend=device, dtype="float64", seed=1)
    print("One inference pass of the untrained 3-4-4-2 network (rows = the 4 samples):")
    np.set_printoptions(precision=3, suppress=True)
    for name, value in inference_pass(model, X):
        print(
            f"{name:5s} {value.shape[0]}x{value.shape[1]}  " + "  ".join(str(row) for row in value)
        )
    fit(
        model,
        X,
        labels,
        epochs=300,
        batch_size=4,
        optimizer="momentum",
        lr=0.1,
        seed=0,
        schedule="constant",
        augment="none",
    )
    y = inference_pass(model, X)[-1][1]
    accuracy = float(np.mean(y.argmax(axis=1) == labels))
    print("\nAfter full-batch gradient descent:")
    print(" x1   x2   x3  | l1 l2 | y1    y2")
    for row, p in zip(TABLE, y, strict=True):
        print(
            f" {row[0]:.1f}  {row[1]:.1f}  {row[2]:.1f} |  {row[3]:.0f}  {row[4]:.0f} | "
            f"{p[0]:.3f} {p[1]:.3f}"
        )
    print(f"MLP 3-4-4-2 accuracy on the table: {100 * accuracy:.0f}%")
    single = perceptron(X, labels, max_epochs=100, backend=device)
    print(
        f"\nThe primal perceptron on the same table (l2 is +1): {single.message()}; "
        f"w = {np.round(single.w, 3).tolist()}, b = {single.b:.3f}"
    )
    return {
        "accuracy": accuracy,
        "perceptron_converged": single.converged,
        "perceptron_accuracy": float(np.mean(single.predict(X) == 2 * labels - 1)),
    }


if __name__ == "__main__":
    main()

"""The notes' worked table: 4 samples, 3 features (x1 x2 x3), 2 classes (l1 l2).

The third feature is a constant 1 and the classes are the XOR of x1 and x2, so
no single linear unit separates them (the perceptron fails, see below) while
a network with one hidden layer learns the table to 100%.

    python examples/notes_table.py
"""

import numpy as np

from mlp_xp import MLP, fit
from mlp_xp.perceptron import perceptron

#            x1 x2 x3      l1 l2
TABLE = np.array([[0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 1],
                  [1, 0, 1, 0, 1],
                  [1, 1, 1, 1, 0]], dtype=np.float64)


def main(device: str = "cpu") -> dict:
    X, onehot = TABLE[:, :3], TABLE[:, 3:]
    labels = onehot.argmax(axis=1)
    model = MLP(3, (4,), 2, activation="tanh", backend=device, dtype="float64", seed=0)
    fit(model, X, labels, epochs=500, batch_size=4, optimizer="momentum", lr=0.2, seed=0,
        schedule="constant", augment="none")
    probs = model.backend.to_numpy(model.predict_proba(model.backend.asarray(X)))
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    print(" x1 x2 x3 | l1 l2 | net output (l1, l2)")
    for row, p in zip(TABLE, probs):
        print(f"  {row[0]:.0f}  {row[1]:.0f}  {row[2]:.0f} |  {row[3]:.0f}  {row[4]:.0f} | "
              f"{p[0]:.3f} {p[1]:.3f}")
    print(f"MLP 3-4-2 accuracy on the table: {100 * accuracy:.0f}%")
    single = perceptron(X, labels, max_epochs=50, backend=device)
    print(f"a single perceptron on the same table: {single.message()}")
    return {"accuracy": accuracy, "perceptron_converged": single.converged}


if __name__ == "__main__":
    main()

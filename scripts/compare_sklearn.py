#!/usr/bin/env python
"""mlp_xp.sklearn beside scikit-learn's MLPClassifier/MLPRegressor, in one run.

Four data sets: scikit-learn's digits (8x8), breast cancer and diabetes, and a
``make_classification`` set large enough for speed to matter. Each is split
once (75/25, stratified for classifiers; inputs standardised on the training
part, diabetes' target too), and every estimator gets the same
hyperparameters: scikit-learn's defaults (one hidden layer of 100 ReLU units,
Adam, lr 1e-3, alpha 1e-4, batch min(200, n), up to 200 epochs, tol 1e-4 with
10 epochs of patience), except (256, 128) hidden units and 20 epochs on the
large set. Only ``random_state`` changes, over the seeds.

For each seed the estimators are fitted one after the other, in an order that
rotates from seed to seed, so a shared machine's noise falls on all of them.
The table gives each estimator's test score (accuracy, or R^2 for diabetes) as
mean and standard deviation over the seeds, the median number of epochs, the
median fit time and seconds per epoch, and fit time as a ratio of
scikit-learn's (medians). scikit-learn computes in float64 (the data's dtype);
mlp_xp in float32 unless ``dtype="float64"``, which the "mlp_xp float64" rows
show.

    python scripts/compare_sklearn.py                        # the table of docs/sklearn.md
    python scripts/compare_sklearn.py --sets digits --seeds 3
    python scripts/compare_sklearn.py --devices cpu,gpu --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import numpy as np
import sklearn
from sklearn import datasets, neural_network
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import mlp_xp
from mlp_xp.backends import get_backend, gpu_probe
from mlp_xp.sklearn import MLPClassifier, MLPRegressor

#: name -> (loader, is a regression, extra hyperparameters)
SETS = {
    "digits": (lambda n: datasets.load_digits(return_X_y=True), False, {}),
    "breast_cancer": (lambda n: datasets.load_breast_cancer(return_X_y=True), False, {}),
    "diabetes": (lambda n: datasets.load_diabetes(return_X_y=True), True, {}),
    "make_classification": (
        lambda n: datasets.make_classification(
            n, 100, n_informative=50, n_classes=10, random_state=0
        ),
        False,
        {"hidden_layer_sizes": (256, 128), "max_iter": 20},
    ),
}


def load(name: str, samples: int):
    loader, regression, params = SETS[name]
    X, y = loader(samples)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=None if regression else y
    )
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    if regression:  # R^2 does not change; the default learning rate suits unit-scale targets
        mean, sd = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / sd, (y_test - mean) / sd
    return (X_train, X_test, y_train, y_test), regression, params


def estimators(regression: bool, devices: list[str]) -> dict:
    """name -> factory(random_state, **params) of every estimator in the comparison."""
    theirs = neural_network.MLPRegressor if regression else neural_network.MLPClassifier
    ours = MLPRegressor if regression else MLPClassifier
    out = {"scikit-learn": lambda seed, **p: theirs(random_state=seed, **p)}
    for device in devices:
        label = "mlp_xp" if device == "cpu" else f"mlp_xp {device}"
        out[label] = lambda seed, d=device, **p: ours(random_state=seed, device=d, **p)
    out["mlp_xp float64"] = lambda seed, **p: ours(
        random_state=seed, device="cpu", dtype="float64", **p
    )
    return out


def compare(name: str, seeds: int, devices: list[str], samples: int, quick: bool) -> list[dict]:
    (X_train, X_test, y_train, y_test), regression, params = load(name, samples)
    if quick:
        params = {**params, "max_iter": 2}
    makers = estimators(regression, devices)
    runs: dict = {label: [] for label in makers}
    labels = list(makers)
    for seed in range(seeds):
        for label in labels[seed % len(labels) :] + labels[: seed % len(labels)]:
            est = makers[label](seed, **params)
            t0 = time.perf_counter()
            est.fit(X_train, y_train)
            seconds = time.perf_counter() - t0
            runs[label].append((est.score(X_test, y_test), est.n_iter_, seconds))
    base = statistics.median(s for *_, s in runs["scikit-learn"])
    rows = []
    for label, results in runs.items():
        scores, epochs, times = (list(column) for column in zip(*results, strict=True))
        fit_s = statistics.median(times)
        rows.append(
            {
                "set": name,
                "shape": list(X_train.shape),
                "network": str(params.get("hidden_layer_sizes", (100,))),
                "estimator": label,
                "metric": "R^2" if regression else "accuracy",
                "score_mean": float(np.mean(scores)),
                "score_sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                "epochs": statistics.median(epochs),
                "fit_seconds": fit_s,
                "epoch_seconds": statistics.median(
                    t / e for t, e in zip(times, epochs, strict=True)
                ),
                "time_vs_sklearn": fit_s / base,
                "seeds": seeds,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| data set (train n x d) | network | estimator | test score, mean +- sd | epochs "
        "| fit s | s/epoch | fit time / scikit-learn's |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        n, d = r["shape"]
        lines.append(
            f"| {r['set']} ({n} x {d}) | {r['network']} | {r['estimator']} | "
            f"{r['metric']} {r['score_mean']:.4f} +- {r['score_sd']:.4f} | {r['epochs']:g} | "
            f"{r['fit_seconds']:.3f} | {r['epoch_seconds'] * 1e3:.1f} ms | "
            f"{r['time_vs_sklearn']:.2f} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    """Where and with what the comparison ran."""
    return {
        "cpu": get_backend("cpu").device,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "mlp_xp": mlp_xp.__version__,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(SETS), help=f"comma list of {', '.join(SETS)}")
    p.add_argument("--seeds", type=int, default=5, help="random states per set (default 5)")
    p.add_argument("--large-seeds", type=int, default=3, help="seeds on make_classification")
    p.add_argument("--samples", type=int, default=80000, help="make_classification samples")
    p.add_argument("--devices", default="cpu", help="cpu and/or gpu (gpu only where usable)")
    p.add_argument("--quick", action="store_true", help="2 epochs a fit: a smoke test")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d == "cpu" or gpu_probe().ok]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name in args.sets.split(","):
            seeds = args.large_seeds if name == "make_classification" else args.seeds
            rows += compare(name, seeds, devices, args.samples, args.quick)
    result = {"machine": machine(), "rows": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(", ".join(f"{k} {v}" for k, v in result["machine"].items()))
        print(table(rows))
    return result


if __name__ == "__main__":
    main()

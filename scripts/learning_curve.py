#!/usr/bin/env python
"""Learning curve: held-out accuracy of the default recipe against training-set size.

The course network (784-300-100-10) and the default ``mlp-xp train`` recipe, with the
augmentation ``--augment auto`` gives the data, trained on stratified subsets of each
size and scored on digits none of them saw; mean and spread over folds and seeds.

    python scripts/learning_curve.py                       # embedded digits: 5-fold CV
    python scripts/learning_curve.py --data DIR --sizes 500,1000,5000,60000

On the embedded 5,000 digits each fold holds out 1,000 digits and draws the subsets from
the other 4,000 (so 4,000 is the largest size). With ``--data DIR`` holding MNIST's
``train-*`` and ``t10k-*`` files, subsets are drawn from the training files and scored on
the 10,000 official test digits (used for scoring only: nothing is tuned on them).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mlp_xp import MLP, fit
from mlp_xp.data import EMBEDDED, load_digits, scale_images, stratified_folds
from mlp_xp.train import TrainConfig
from mlp_xp.train.autoaugment import choose_augment


def subset(labels: np.ndarray, pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices of ``pool``, the same share of each class (stratified), sorted."""
    rng = np.random.default_rng(seed)
    picked = []
    classes = np.unique(labels[pool])
    for i, cls in enumerate(classes):
        members = pool[labels[pool] == cls]
        share = n * len(members) // len(pool) + (i < n * len(members) % len(pool))
        picked.append(rng.choice(members, min(share, len(members)), replace=False))
    return np.sort(np.concatenate(picked))


def splits(data: str, folds: int):
    """(images, labels, [(pool, scored images, scored labels)]) for CV or a test split."""
    train = load_digits(data)
    X = scale_images(train.images)
    if data == EMBEDDED:
        parts = stratified_folds(train.labels, folds, seed=0)
        everything = np.arange(len(train))
        return (
            train,
            X,
            [(np.setdiff1d(everything, held), X[held], train.labels[held]) for held in parts],
        )
    test = load_digits(data, "test")
    return train, X, [(np.arange(len(train)), scale_images(test.images), test.labels)]


def curve(
    data: str, sizes: list[int], folds: int, seeds: int, device: str, epochs: int | None = None
) -> list[dict]:
    train, X, scored = splits(data, folds)
    config = {**vars(TrainConfig()), "augment": choose_augment("auto", train).augment}
    if epochs is not None:
        config["epochs"] = epochs
    rows = []
    for n in sizes:
        scores, seconds = [], []
        for f, (pool, X_test, y_test) in enumerate(scored):
            if n > len(pool):
                raise SystemExit(f"size {n} is larger than the {len(pool)} digits to draw from")
            for s in range(seeds):
                idx = subset(train.labels, pool, n, seed=1000 * f + s)
                model = MLP(784, (300, 100), 10, backend=device, seed=s)
                start = time.perf_counter()
                fit(model, X[idx], train.labels[idx], **config)
                seconds.append(time.perf_counter() - start)
                scores.append(model.evaluate(X_test, y_test)["accuracy"])
        rows.append(
            {
                "size": n,
                "accuracy": scores,
                "mean": float(np.mean(scores)),
                "std": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                "seconds_per_run": float(np.median(seconds)),
                "augment": config["augment"],
            }
        )
    return rows


def table_row(row: dict) -> str:
    """One row of the Markdown table the script prints (docs/accuracy.md takes it as is)."""
    acc = 100 * np.array(row["accuracy"])
    return (
        f"| {row['size']:,} | {acc.mean():.2f}% | {np.std(acc, ddof=1) if acc.size > 1 else 0:.2f} "
        f"| {acc.min():.2f}-{acc.max():.2f}% | {acc.size} | {row['seconds_per_run']:.0f} |"
    )


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=EMBEDDED)
    p.add_argument("--sizes", default="500,1000,2000,4000")
    p.add_argument("--folds", type=int, default=5, help="CV folds on the embedded digits")
    p.add_argument("--seeds", type=int, default=2, help="subsets (and initial weights) per fold")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    rows = curve(args.data, sizes, args.folds, args.seeds, args.device, args.epochs)
    if args.json:
        print(json.dumps(rows))
    else:
        print("| training digits | mean | std (points) | range | runs | s / run |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in rows:
            print(table_row(row))
    return rows


if __name__ == "__main__":
    main()

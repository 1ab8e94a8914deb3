#!/usr/bin/env python
"""Honest accuracy: stratified k-fold cross-validation on the embedded digits.

Each fold trains a fresh 784-300-100-10 network on the other k-1 folds and
scores it on the held-out fold, which no training decision sees (the recipe
trains a fixed number of epochs; no early stopping on the scored fold). Prints
mean and spread per recipe; the first row is the default `mlp-xp train`
recipe, the second the plain-SGD baseline.

    python scripts/accuracy_report.py                 # 5 folds, default + baseline
    python scripts/accuracy_report.py --variants      # also the alternatives tried
    python scripts/accuracy_report.py --json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mlp_xp import MLP, fit
from mlp_xp.data import load_digits, scale_images, stratified_folds
from mlp_xp.train import TrainConfig
from mlp_xp.train.autoaugment import choose_augment

# the default recipe as `mlp-xp train` runs it on the embedded digits (auto -> affine)
DEFAULT = {**vars(TrainConfig()), "augment": choose_augment("auto", load_digits()).augment}
RECIPES = {
    "default recipe": {},
    "baseline: plain SGD, 20 epochs, no augmentation": dict(
        optimizer="sgd",
        momentum=0.0,
        lr=0.1,
        epochs=20,
        schedule="constant",
        augment="none",
        ema=0.0,
    ),
}
VARIANTS = {
    "previous default (0.1.0): lr 0.05, cosine schedule, no average": dict(
        lr=0.05, schedule="cosine", ema=0.0
    ),
    "no weight average (constant lr 0.08)": dict(ema=0.0),
    "lr 0.1 + weight average 0.99": dict(lr=0.1),
    "lr 0.1 + weight average 0.999": dict(lr=0.1, ema=0.999),
    "elastic + weight average": dict(augment="elastic"),
    "momentum, 20 epochs, no augmentation": dict(
        lr=0.05, epochs=20, augment="none", schedule="constant", ema=0.0
    ),
}


def cross_validate(
    overrides: dict, k: int, device: str, l2: float, seed: int, epochs: int | None = None
) -> dict:
    digits = load_digits()
    X = scale_images(digits.images)
    folds = stratified_folds(digits.labels, k, seed=seed)
    config = {**DEFAULT, **overrides}
    if epochs is not None:
        config["epochs"] = epochs
    scores, seconds = [], []
    for i, held_out in enumerate(folds):
        train = np.concatenate([f for j, f in enumerate(folds) if j != i])
        model = MLP(784, (300, 100), 10, backend=device, l2=l2, seed=seed + i)
        t0 = time.perf_counter()
        history = fit(
            model, X[train], digits.labels[train], X[held_out], digits.labels[held_out], **config
        )
        seconds.append(time.perf_counter() - t0)
        del history  # its per-epoch figures are of the raw weights; score what fit left
        scores.append(model.evaluate(X[held_out], digits.labels[held_out])["accuracy"])
    return {
        "config": config,
        "accuracy": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores, ddof=1)) if k > 1 else 0.0,
        "seconds_per_fold": float(np.median(seconds)),
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    p.add_argument("--variants", action="store_true", help="also run the alternatives tried")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    recipes = {**RECIPES, **(VARIANTS if args.variants else {})}
    rows = []
    if not args.json:
        print(
            f"{args.folds}-fold stratified cross-validation on the embedded 5,000 digits "
            f"({args.device})"
        )
        print(f"{'recipe':52s} {'mean':>7s} {'std':>6s} {'min':>7s} {'max':>7s} {'s/fold':>7s}")
    for name, overrides in recipes.items():
        r = cross_validate(overrides, args.folds, args.device, args.l2, args.seed, args.epochs)
        r["recipe"] = name
        rows.append(r)
        if not args.json:
            acc = 100 * np.array(r["accuracy"])
            print(
                f"{name:52s} {acc.mean():6.2f}% {100 * r['std']:5.2f}% {acc.min():6.2f}% "
                f"{acc.max():6.2f}% {r['seconds_per_fold']:7.1f}",
                flush=True,
            )
    if args.json:
        print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()

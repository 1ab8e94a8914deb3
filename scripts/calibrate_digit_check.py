#!/usr/bin/env python
"""The bounds ``mlp-xp predict`` weighs an input against before it names a digit.

Computes :func:`mlp_xp.data.plausible.calibrate` on a digit set (the embedded digits by
default) and prints each feature's range over the set and the bound derived from it,
then checks them on the set's held-out fifth (calibrated on the other four fifths) and
on inputs that are not digits: uniform noise, scattered dots and Gaussian noise at
several sizes, one dark pixel, two pixels, a filled square.

    python scripts/calibrate_digit_check.py               # the embedded digits
    python scripts/calibrate_digit_check.py --data DIR    # MNIST-format IDX files

``mlp_xp.data.plausible.BOUNDS`` holds what this prints for the embedded digits
(``tests/test_plausible.py`` checks that they agree).
"""

from __future__ import annotations

import argparse

import numpy as np

from mlp_xp.data import EMBEDDED, load_digits, stratified_split
from mlp_xp.data.images import to_mnist
from mlp_xp.data.plausible import BOUNDS, calibrate, evidence, verdict


def not_digits(seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Grayscale pages (dark ink on white, in [0, 1]) that hold no digit."""
    rng = np.random.default_rng(seed)
    pages = []
    for size in (30, 60, 100, 200, 400):
        pages.append((f"uniform noise {size}px", rng.random((size, size))))
        pages.append((f"5% dots {size}px", np.where(rng.random((size, size)) < 0.05, 0.0, 1.0)))
        gauss = np.clip(0.5 + 0.15 * rng.standard_normal((size, size)), 0, 1)
        pages.append((f"gaussian noise {size}px", gauss))
    for name, where in (("one pixel", [(40, 60)]), ("two pixels", [(20, 20), (70, 60)])):
        page = np.ones((100, 100))
        for y, x in where:
            page[y, x] = 0.0
        pages.append((name, page))
    square = np.ones((100, 100))
    square[20:80, 20:80] = 0.0
    pages.append(("filled square", square))
    return pages


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=EMBEDDED)
    args = parser.parse_args(argv)
    digits = load_digits(args.data, image_shape=(28, 28))
    bounds = calibrate(digits.images)
    ev = evidence(digits.images / 255.0)
    print(f"{len(ev)} digits from {args.data}")
    for key in ("ink", "solid", "coherence", "span"):
        values = np.array([e[key] for e in ev])
        print(f"  {key:9s} {values.min():.3f} .. {values.max():.3f}")
    print(f"bounds: {bounds}")
    if str(args.data) == EMBEDDED and bounds != BOUNDS:
        print(f"differs from mlp_xp.data.plausible.BOUNDS: {BOUNDS}")
    train, held_out = stratified_split(digits.labels, 0.2, seed=0)
    part = calibrate(digits.images[train])
    refused = sum(verdict(e, part) is not None for e in evidence(digits.images[held_out] / 255.0))
    print(
        f"held-out digits called 'not a digit' (bounds from the rest): {refused} of {len(held_out)}"
    )
    passed = []
    for name, page in not_digits():
        info: dict = {}
        field = to_mnist(page, name, info)
        (e,) = evidence(field[None] / 255.0, [info])
        reason = verdict(e, bounds)
        print(f"  {name:22s} {reason or 'PASSED AS A DIGIT'}")
        passed += [name] if reason is None else []
    return {"bounds": bounds.to_dict(), "held_out_refused": refused, "not_digits_passed": passed}


if __name__ == "__main__":
    main()

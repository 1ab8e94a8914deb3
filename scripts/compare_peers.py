#!/usr/bin/env python
"""mlp_xp against PyTorch and scikit-learn, timed the same way in the same run.

The same network (784-300-100-10, ReLU, softmax cross-entropy), optimizer (SGD,
momentum 0.9, lr 0.05, L2/weight decay 1e-4), float32 data and batch size, on
the same synthetic MNIST-shaped samples. Each framework gets a warm-up epoch;
then ``--repeats`` epochs are timed (with a device synchronise before each
clock read) and the median is reported, with ratios against mlp_xp.

The peers are optional: each is skipped, with the reason, when not installed.
"mlp_xp on torch" is mlp_xp's own math on PyTorch tensors (``--device torch:cpu``, and
``torch:cuda`` where PyTorch sees a GPU) beside PyTorch's ``nn`` on the same device: the
ratio of the two is what the abstraction costs on one library.
"8 matmuls only" times each step's eight matrix products alone, on the same
shapes: the floor a CPU epoch cannot go below, so mlp_xp's time over it is what
everything else in a step costs.

    python scripts/compare_peers.py                       # 60,000 samples, batch 128
    python scripts/compare_peers.py --batch-size 1024 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import numpy as np

from mlp_xp.backends import get_backend, gpu_probe
from mlp_xp.backends.torch import torch_probe
from mlp_xp.cli.bench import NETWORK, benchmark_trainer
from mlp_xp.errors import DeviceError
from mlp_xp.host import core_count


def mlp_xp_epoch(X, y, batch_size, device):
    """An epoch callable and a sync for mlp_xp, with the benchmark configuration."""
    backend = get_backend(device)
    trainer = benchmark_trainer(backend, X, y, batch_size, epochs=10**6)
    return trainer.run_epoch, backend.synchronize


def matmul_floor_epoch(X, batch_size):
    """The eight matmuls of each training step alone, on NumPy: the floor an epoch can reach.

    Forward ``x W1``, ``h1 W2``, ``h2 W3``; backward ``x^T d1``, ``h1^T d2``, ``h2^T d3``
    (dE/dW) and ``d3 W3^T``, ``d2 W2^T`` (dE/dx of the two upper layers).
    """
    rng = np.random.default_rng(0)
    sizes = [NETWORK[0], *NETWORK[1], NETWORK[2]]
    Ws = [rng.random(shape, dtype=np.float32) for shape in itertools.pairwise(sizes)]
    n = len(X)

    def epoch():
        for start in range(0, n, batch_size):
            x = X[start : start + batch_size]
            h1 = x @ Ws[0]
            h2 = h1 @ Ws[1]
            z = h2 @ Ws[2]
            x.T @ h1, h1.T @ h2, h2.T @ z
            z @ Ws[2].T, h2 @ Ws[1].T

    return epoch, (lambda: None)


def torch_epoch(X, y, batch_size, device):
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(core_count())
    dev = torch.device(device)
    Xt = torch.as_tensor(X, device=dev)
    yt = torch.as_tensor(y, device=dev)
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 300),
        torch.nn.ReLU(),
        torch.nn.Linear(300, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    ).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(y)

    def epoch():
        order = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    return epoch, (torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))


def sklearn_epoch(X, y, batch_size):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=(300, 100),
        solver="sgd",
        momentum=0.9,
        nesterovs_momentum=False,
        learning_rate_init=0.05,
        alpha=1e-4,
        batch_size=batch_size,
        shuffle=True,
        random_state=0,
    )
    clf.partial_fit(X[:batch_size], y[:batch_size], classes=np.arange(10))  # set up the net
    return (lambda: clf.partial_fit(X, y)), (lambda: None)


def interleaved_medians(runners: dict, repeats: int) -> dict:
    """Warm each up once, then time one epoch of each in turn, ``repeats`` rounds.

    Interleaving spreads a shared machine's noise evenly over the frameworks.
    """
    for epoch, sync in runners.values():
        epoch()
        sync()
    times: dict = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (epoch, sync) in runners.items():
            sync()
            t0 = time.perf_counter()
            epoch()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peers", default="torch,sklearn")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    runners, skipped = {}, {}

    def add(key, make):
        try:
            runners[key] = make()
        except (ImportError, DeviceError) as exc:
            skipped[key] = str(exc)

    peers = args.peers.split(",")
    add(("mlp_xp", "cpu"), lambda: mlp_xp_epoch(X, y, args.batch_size, "cpu"))
    add(("8 matmuls only", "cpu"), lambda: matmul_floor_epoch(X, args.batch_size))
    if "torch" in peers:
        add(("mlp_xp on torch", "cpu"), lambda: mlp_xp_epoch(X, y, args.batch_size, "torch:cpu"))
        add(("pytorch", "cpu"), lambda: torch_epoch(X, y, args.batch_size, "cpu"))
    if "sklearn" in peers:
        add(("scikit-learn", "cpu"), lambda: sklearn_epoch(X, y, args.batch_size))
    if gpu_probe().ok:
        add(("mlp_xp", "gpu"), lambda: mlp_xp_epoch(X, y, args.batch_size, "gpu"))
        if "torch" in peers:
            add(("pytorch", "cuda"), lambda: torch_epoch(X, y, args.batch_size, "cuda"))
    if "torch" in peers and torch_probe("cuda").ok:
        add(("mlp_xp on torch", "cuda"), lambda: mlp_xp_epoch(X, y, args.batch_size, "torch:cuda"))
        add(("pytorch", "cuda"), lambda: torch_epoch(X, y, args.batch_size, "cuda"))
    medians = interleaved_medians(runners, args.repeats)
    rows = [
        {"framework": fw, "device": dev, "epoch_seconds": s} for (fw, dev), s in medians.items()
    ]
    rows += [{"framework": fw, "device": dev, "skipped": why} for (fw, dev), why in skipped.items()]
    ours = {
        r["device"].replace("cuda", "gpu"): r["epoch_seconds"]
        for r in rows
        if r["framework"] == "mlp_xp"
    }
    for r in rows:
        base = ours.get(r["device"].replace("cuda", "gpu"))
        if "epoch_seconds" in r and base:
            r["mlp_xp_time_ratio"] = base / r["epoch_seconds"]
    nn = {r["device"]: r["epoch_seconds"] for r in rows if r["framework"] == "pytorch"}
    for r in rows:  # what the abstraction costs: the same math on the same tensors
        if r["framework"] == "mlp_xp on torch" and "epoch_seconds" in r and r["device"] in nn:
            r["torch_nn_time_ratio"] = r["epoch_seconds"] / nn[r["device"]]
    result = {
        "samples": args.samples,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
        return result
    print(
        f"784-300-100-10, SGD momentum 0.9, batch {args.batch_size}, {args.samples} samples; "
        f"median of {args.repeats} interleaved epochs after a warm-up"
    )
    for r in rows:
        if "skipped" in r:
            print(f"{r['framework']:15s} {r['device']:5s} skipped: {r['skipped']}")
            continue
        ratio = (
            f"mlp_xp takes {r['mlp_xp_time_ratio']:.2f}x its time"
            if r["framework"] != "mlp_xp" and "mlp_xp_time_ratio" in r
            else ""
        )
        if r["framework"] == "8 matmuls only":
            ratio = f"the floor: mlp_xp takes {r['mlp_xp_time_ratio']:.2f}x it"
        if "torch_nn_time_ratio" in r:
            ratio = f"takes {r['torch_nn_time_ratio']:.2f}x PyTorch nn's time on these tensors"
        print(f"{r['framework']:15s} {r['device']:5s} {r['epoch_seconds']:7.3f} s/epoch  {ratio}")
    return result


if __name__ == "__main__":
    main()

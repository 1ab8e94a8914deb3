"""One cold-start run to a target accuracy, in its own process (``bench --to-accuracy``).

``python -m mlp_xp.cli.bench_run SPEC`` (a JSON object: device, batch size, seed,
target, epoch limit, data, and ``launched``, the wall-clock time at which the parent
started this process) trains the recipe until the held-out accuracy after an epoch
reaches the target, and prints one JSON line: the phases' seconds and each epoch's
accuracy. Each run is a new process, so its start-up holds what a user's first run
pays: the interpreter, the imports, the device probe, the model's initialisation and
the step's choice (on a GPU the fast step's self-check, which compiles its kernels).

The phases, each timed by ``time.perf_counter`` with the device synchronised:

``startup``   launch -> imports done (``launch_and_imports``), the device probed and the
              model made (``device_and_model``), and the step's choice (``step_choice``)
``data``      reading the digits, the split, the copy to the device (the Trainer)
``training``  the epochs, each with its held-out check, until the target (or the limit)

``whole`` is the wall clock from the parent's launch to the epoch that reached the
target, so the parts can be checked against it (:func:`mlp_xp.benchtime.account`).
"""

from __future__ import annotations

import json
import sys
import time

from .. import benchtime


def recipe(batch_size: int, max_epochs: int, seed: int, augment: str) -> dict:
    """The training recipe at ``batch_size``: the default's, its learning rate scaled by
    the linear rule (``lr = 0.08 * B / 128``, Goyal et al. 2017, as in docs/scaling.md),
    with a 5-epoch linear warm-up above batch 128; no weight average (its decay is per
    step, so its lag in epochs grows with the batch; each epoch's check reads the
    weights themselves)."""
    from ..train import TrainConfig

    base = TrainConfig()
    return dict(
        epochs=max_epochs,
        batch_size=batch_size,
        lr=base.lr * batch_size / base.batch_size,
        warmup_epochs=5.0 if batch_size > base.batch_size else 0.0,
        ema=0.0,
        seed=seed,
        augment=augment,
    )


def _prepare(spec: dict, mark) -> tuple:
    """Start-up and data phases: the backend, the model, the trainer; the step chosen."""
    from ..backends import get_backend
    from ..data import Normalization, load_digits, recorded_split
    from ..model import MLP
    from ..train import TrainConfig, Trainer
    from ..train.autoaugment import choose_augment

    backend = get_backend(spec["device"])
    model = MLP(784, (300, 100), 10, backend=backend, l2=1e-4, seed=spec["seed"])
    backend.synchronize()
    mark("startup", "device_and_model")
    digits = load_digits(spec["data"], image_shape=(28, 28))
    train_idx, val_idx = recorded_split(digits.labels, None)
    augment = choose_augment(spec.get("augment", "auto"), digits).augment
    settings = recipe(spec["batch_size"], spec["max_epochs"], spec["seed"], augment)
    norm = Normalization()
    on_gpu = backend.kind == "gpu"  # the fast step gathers float inputs; else uint8 pixels
    images = digits.images[train_idx].reshape(len(train_idx), -1)
    trainer = Trainer(
        model,
        norm.apply(images, model.dtype) if on_gpu else images,
        digits.labels[train_idx],
        norm.apply(digits.images[val_idx], model.dtype),
        digits.labels[val_idx],
        TrainConfig(**settings),
        pixels=None if on_gpu else norm,
    )
    backend.synchronize()
    mark("data")
    # what the first epoch would do first (Trainer.run_epoch); the fast step checks itself
    trainer.runner = trainer.choose_step(trainer.plan(0))
    backend.synchronize()
    mark("startup", "step_choice")
    return trainer, settings


def run(spec: dict) -> dict:
    """Train to ``spec["target"]``; the phases' seconds, accuracies and whether it got there."""
    import numpy as np

    from ..errors import DivergenceError

    seconds = {"startup": 0.0, "data": 0.0, "training": 0.0}
    # the interpreter's start and the imports: from the launch (another process) to here
    startup = {"launch_and_imports": time.time() - spec["launched"]}
    seconds["startup"] = startup["launch_and_imports"]
    last = [time.perf_counter()]

    def mark(phase: str, part: str = "") -> None:
        now = time.perf_counter()
        seconds[phase] += now - last[0]
        if part:
            startup[part] = now - last[0]
        last[0] = now

    trainer, settings = _prepare(spec, mark)
    reached, diverged, epochs = False, None, []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while not reached and trainer.epoch < spec["max_epochs"]:
            try:
                trainer.run_epoch()
            except DivergenceError as exc:
                diverged = str(exc)
                break
            epochs.append(time.perf_counter() - last[0])
            mark("training")
            reached = trainer.history.val_accuracy[-1] >= spec["target"]
    whole = time.time() - spec["launched"]
    return {
        **{k: spec[k] for k in ("device", "batch_size", "seed")},
        "backend": trainer.backend.name,
        "device_name": trainer.backend.device,
        "step": trainer.runner.name,
        "reached": reached,
        "diverged": diverged,
        "epochs": len(epochs),
        "val_accuracy": list(trainer.history.val_accuracy),
        "epoch_seconds": epochs,
        "step_seconds": float(sum(trainer.history.seconds)),
        **seconds,
        "startup_parts": startup,
        "whole": whole,
        "accounting": benchtime.account(seconds, whole),
        "recipe": settings,
    }


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    print(json.dumps(run(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

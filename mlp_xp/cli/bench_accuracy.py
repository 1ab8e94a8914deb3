"""``mlp-xp bench --to-accuracy A``: time to a held-out accuracy, per device and batch size.

For each device named in ``--devices`` (whatever :func:`~mlp_xp.backends.get_backend`
accepts, so every backend is a row like any other) and each batch size, each seed is a
cold-start run in its own process (:mod:`mlp_xp.cli.bench_run`) until the held-out
accuracy after an epoch reaches ``A``; the runs' times give a median and an
order-statistic interval (:mod:`mlp_xp.benchtime`), split into start-up, data to the
device and training, and how many runs never reached ``A``. A separate measuring pass
then says where a step's time goes (:mod:`mlp_xp.cli.step_parts`), and a paragraph at
the end says what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import benchtime
from ..errors import MlpXpError
from .bench_env import environment
from .bench_run import recipe

__all__ = ["run_to_accuracy", "format_accuracy", "RULE"]

RULE = (
    "the recipe (momentum SGD 0.9, lr 0.08 at batch 128, affine augmentation for digits) "
    "with its learning rate scaled linearly with the batch (lr = 0.08 * B / 128, "
    "Goyal et al. 2017; a 5-epoch warm-up above batch 128), no weight average"
)


def _child_env() -> dict[str, str]:
    """The environment of a run's process: this one's, with this mlp_xp importable first."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def cold_run(spec: dict) -> dict:
    """One run in a new process (:mod:`mlp_xp.cli.bench_run`): its JSON line."""
    spec = dict(spec, launched=time.time())
    done = subprocess.run(
        [sys.executable, "-m", "mlp_xp.cli.bench_run", json.dumps(spec)],
        capture_output=True, text=True, env=_child_env(),
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MlpXpError(
            f"the run on {spec['device']} at batch {spec['batch_size']}, seed {spec['seed']} "
            f"failed: {why}"
        )
    return json.loads(lines[-1])


def _row(device: str, batch: int, runs: list[dict], target: float) -> dict:
    """A device and batch size's runs, summarised: time to target and its parts."""
    reached = [r for r in runs if r["reached"]]
    times = [r["whole"] if r["reached"] else None for r in runs]
    parts = {
        k: benchtime.median([r[k] for r in reached]) if reached else None
        for k in ("startup", "data", "training")
    }
    return {
        "device": device,
        "backend": runs[0]["backend"],
        "device_name": runs[0]["device_name"],
        "step": runs[0]["step"],
        "batch_size": batch,
        "lr": runs[0]["recipe"]["lr"],
        "target": target,
        "time_to_target": benchtime.summarize_times(times),
        "parts_median": parts,
        "epochs_median": benchtime.median([r["epochs"] for r in reached]) if reached else None,
        "accounted": all(r["accounting"]["ok"] for r in runs),
        "runs": runs,
    }


def _breakdown(backend, batch: int, data: str, steps: int) -> dict:
    """Where a step goes at ``batch`` on ``backend``: a trainer made for the measuring pass,
    its inputs as a run's (uint8 pixels scaled per batch; floats on a GPU, for its fast step)."""
    from ..data import Normalization, load_digits, recorded_split
    from ..model import MLP
    from ..train import TrainConfig, Trainer
    from ..train.autoaugment import choose_augment
    from .step_parts import step_parts

    digits = load_digits(data, image_shape=(28, 28))
    train_idx, _ = recorded_split(digits.labels, None)
    images, norm = digits.images[train_idx].reshape(len(train_idx), -1), Normalization()
    model = MLP(784, (300, 100), 10, backend=backend, l2=1e-4, seed=0)
    config = TrainConfig(**recipe(batch, 1, 0, choose_augment("auto", digits).augment))
    on_gpu = backend.kind == "gpu"
    trainer = Trainer(model, norm.apply(images, model.dtype) if on_gpu else images,
                      digits.labels[train_idx], config=config,
                      pixels=None if on_gpu else norm)  # fmt: skip
    return step_parts(trainer, steps=steps)


def run_to_accuracy(
    devices: list[str],
    batch_sizes,
    target: float,
    seeds: int = 6,
    max_epochs: int = 60,
    data: str = "mnist-5k",
    steps: int = 10,
    log=print,
) -> dict:
    """Every device and batch size: time to ``target`` over ``seeds`` cold runs, and
    where a step's time goes; see :func:`format_accuracy`."""
    from ..backends import get_backend
    from .bench import matmul_rate
    from .step_parts import copy_rate, verdict

    backends = [get_backend(d) for d in devices]  # an unusable device fails here, first
    out: dict[str, Any] = {
        "target": target, "data": data, "seeds": seeds, "max_epochs": max_epochs,
        "rule": RULE, "tolerance": list(benchtime.TOLERANCE),
        "environment": environment(backends), "devices": [], "rows": [],
    }  # fmt: skip
    for name, backend in zip(devices, backends, strict=True):
        peak, copy = matmul_rate(backend), copy_rate(backend)
        out["devices"].append({"device": name, "backend": backend.name, "name": backend.device,
                               "matmul_gflops": peak, "copy_gbs": copy})  # fmt: skip
        log(f"{name}: {backend.device}; matmul {peak:.1f} GFLOP/s, copy {copy:.1f} GB/s")
        for batch in batch_sizes:
            runs = []
            for seed in range(seeds):
                spec = dict(device=name, batch_size=batch, seed=seed, target=target,
                            max_epochs=max_epochs, data=data)  # fmt: skip
                runs.append(cold_run(spec))
                r = runs[-1]
                got = f"{r['whole']:.2f} s" if r["reached"] else "not reached"
                log(f"  batch {batch:>5d} seed {seed}: {got} ({r['epochs']} epochs)")
            row = _row(name, batch, runs, target)
            row["parts"] = _breakdown(backend, batch, data, steps)
            row["verdict"] = verdict(row["parts"], peak, copy)
            out["rows"].append(row)
    out["summary"] = summary(out)
    return out


def _seconds(t: dict) -> str:
    """``9.8 s (9.1-10.6)``; ``not reached`` where the median or a bound is infinite."""
    if t["median"] is None:
        return "not reached"
    high = f"{t['high']:.2f}" if t["high"] is not None else "not reached"
    return f"{t['median']:.2f} s ({t['low']:.2f}-{high})"


def _interval_note(result: dict) -> str:
    t = result["rows"][0]["time_to_target"] if result["rows"] else None
    if t is None:
        return ""
    return (f"intervals: {t['method']}, {100 * t['coverage']:.1f}% coverage with "
            f"{t['runs']} seeds (95% asked)")  # fmt: skip


#: What to do about what bounds the fastest row's step.
ADVICE = {
    "compute": "its step is bound by the matrix products, so a device with a faster matmul "
    "is what would shorten it",
    "memory": "its step is bound by memory traffic outside the matrix products, so fused "
    "operations would shorten it more than FLOP/s",
    "overhead": "its step is bound by per-operation overhead (the interpreter, small "
    "operations), so a larger batch or fused operations would shorten it",
    "launches": "its device waits for kernel launches, so a larger batch or the CUDA-graph "
    "step (--gpu-step graph) would shorten it",
}


def _apart(slow: dict, fast: dict) -> bool:
    """Whether ``slow``'s interval lies wholly above ``fast``'s (a clear difference)."""
    return slow["low"] is not None and fast["high"] is not None and slow["low"] > fast["high"]


def _comparisons(rows: list[dict]) -> list[str]:
    """At each batch size two or more devices reached the target at: which was faster."""
    said = []
    for batch in sorted({r["batch_size"] for r in rows}):
        at = sorted((r for r in rows if r["batch_size"] == batch),
                    key=lambda r: r["time_to_target"]["median"])  # fmt: skip
        if len(at) < 2:
            continue
        first, second = at[0], at[1]
        clear = _apart(second["time_to_target"], first["time_to_target"])
        said.append(
            f"at batch {batch} {first['device']} takes {_seconds(first['time_to_target'])} and "
            f"{second['device']} {_seconds(second['time_to_target'])}"
            + ("" if clear else " (the intervals overlap: no clear difference)")
        )
    return said


def summary(result: dict) -> str:
    """The paragraph a person can act on: the fastest row, the devices compared batch by
    batch, what bounds the steps and what to do about it, the runs that never got there."""
    rows = [r for r in result["rows"] if r["time_to_target"]["median"] is not None]
    pct = f"{100 * result['target']:g}%"
    if not rows:
        return (
            f"No device reached {pct} held-out accuracy in most runs within "
            f"{result['max_epochs']} epochs: lower the target or raise --max-epochs."
        )
    best = min(rows, key=lambda r: r["time_to_target"]["median"])
    others = [f"{r['device']} at batch {r['batch_size']} {_seconds(r['time_to_target'])}"
              + ("" if _apart(r["time_to_target"], best["time_to_target"]) else " (overlapping)")
              for r in rows if r is not best]  # fmt: skip
    text = (
        f"On this machine, {best['device']} at batch {best['batch_size']} reaches {pct} "
        f"held-out accuracy soonest: {_seconds(best['time_to_target'])}"
        + (f"; the others: {', '.join(others)}" if others else "")
        + "."
    )
    compared = _comparisons(rows)
    if compared:
        text += " Device against device: " + "; ".join(compared) + "."
    bounds = [f"{r['device']} batch {r['batch_size']}: {r['verdict']['bound']}"
              for r in result["rows"]]  # fmt: skip
    text += f" What bounds a step: {', '.join(bounds)}; at the fastest setting "
    text += ADVICE[best["verdict"]["bound"]] + "."
    never = [f"{r['time_to_target']['never_reached']} of {r['time_to_target']['runs']} at "
             f"{r['device']} batch {r['batch_size']}"
             for r in result["rows"] if r["time_to_target"]["never_reached"]]  # fmt: skip
    if never:
        text += f" Never reached {pct} within {result['max_epochs']} epochs: {', '.join(never)}."
    return text


def format_accuracy(result: dict) -> str:
    """The human-readable tables and the verdict."""
    lines = [
        f"time to {100 * result['target']:g}% held-out accuracy on {result['data']}: "
        f"{result['seeds']} cold-start runs (seeds) each, at most {result['max_epochs']} "
        f"epochs; {result['rule']}",
        _interval_note(result),
        "",
        f"{'device':10s} {'batch':>5s} {'lr':>6s} {'time to target (interval)':>30s} "
        f"{'never':>5s} {'start-up':>8s} {'data':>6s} {'training':>8s} {'epochs':>6s}",
    ]
    for r in result["rows"]:
        t, p = r["time_to_target"], r["parts_median"]
        f = [f"{p[k]:.2f}" if p[k] is not None else "-" for k in ("startup", "data", "training")]
        ep = f"{r['epochs_median']:g}" if r["epochs_median"] is not None else "-"
        lines.append(
            f"{r['device']:10s} {r['batch_size']:>5d} {r['lr']:6.3g} {_seconds(t):>30s} "
            f"{t['never_reached']:>5d} {f[0]:>8s} {f[1]:>6s} {f[2]:>8s} {ep:>6s}"
        )
    lines += ["", "where a step's time goes (measuring pass, device synchronised between "
              "phases; ms per step)"]  # fmt: skip
    lines += _parts_table(result)
    lines += ["", result["summary"]]
    return "\n".join(lines)


def _parts_table(result: dict) -> list[str]:
    names = ("gather", "augmentation", "matmuls", "elementwise", "optimizer")
    lines = [f"{'device':10s} {'batch':>5s} " + " ".join(f"{n[:11]:>11s}" for n in names)
             + f" {'mm GFLOP/s':>10s} {'rest GB/s':>9s} {'bound':>9s}"]  # fmt: skip
    for r in result["rows"]:
        sec, v = r["parts"]["seconds"], r["verdict"]
        cells = " ".join(f"{1e3 * sec[n]:11.3f}" if n in sec else f"{'-':>11s}" for n in names)
        lines.append(
            f"{r['device']:10s} {r['batch_size']:>5d} {cells} "
            f"{v['matmul_gflops']:10.1f} {v['rest_gbs']:9.1f} {v['bound']:>9s}"
        )
        w = r["parts"]["whole_step"]
        device = (f", the device busy {1e3 * w['device_seconds']:.3f} ms (CUDA events)"
                  if "device_seconds" in w else "")  # fmt: skip
        lines.append(f"{'':17s}whole {w['step']} step {1e3 * w['seconds']:.3f} ms, host "
                     f"issuing it {1e3 * w['issue_seconds']:.3f} ms{device}")  # fmt: skip
    for d in result["devices"]:
        lines.append(f"{d['device']}: large matmul {d['matmul_gflops']:.1f} GFLOP/s, "
                     f"copy {d['copy_gbs']:.1f} GB/s ({d['name']})")  # fmt: skip
    return lines


def _device_names(text: str | None) -> list[str]:
    """``--devices`` as a list: any name the backends take; by default the CPU, and GPU 0
    where it passes the probe."""
    from ..backends import gpu_probe
    from ..errors import ConfigError

    if text is None:
        return ["cpu", "gpu"] if gpu_probe(0).ok else ["cpu"]
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise ConfigError(f"--devices must be a comma list of device names, got {text!r}")
    return names


def cmd_to_accuracy(args) -> int:
    """``mlp-xp bench --to-accuracy A``: the tables, the verdict, the roofline, the JSON."""
    from ..errors import ConfigError
    from .console import emit_json, log_stream, resolve

    if args.ranks is not None:
        raise ConfigError("--to-accuracy and --ranks are two benchmarks: give one of them")
    if args.plot:  # no matplotlib, or a path that cannot be written: said before the runs
        from ..fileio import output_path
        from .plots import require_matplotlib

        require_matplotlib(output_path(resolve(args.plot)))
    log = log_stream(args)
    result = run_to_accuracy(
        _device_names(args.devices),
        args.batch_sizes,
        args.to_accuracy,
        args.seeds,
        args.max_epochs,
        args.data or "mnist-5k",
        log=lambda s: print(s, file=log, flush=True),
    )
    print(format_accuracy(result), file=log)
    if args.plot:
        from .roofline import roofline_plot

        print(f"wrote {roofline_plot(result, resolve(args.plot))}", file=log)
    if args.json:
        emit_json(result)
    return 0

#!/usr/bin/env python
"""What docs/benchmarks.md needs from a machine with an NVIDIA GPU, in one command.

    python scripts/gpu_report.py --out gpu_report.md

1. runs the GPU tests with their skips turned into failures (``pytest -m gpu
   --require-gpu``);
2. checks the fast step against the generic step on the GPU: its own run-time check,
   then two epochs of each recipe both ways, compared;
3. times training epochs, interleaved (median of ``--repeats`` after a warm-up): mlp_xp's
   fast step, its generic step and PyTorch eager CUDA when torch has CUDA, at each batch
   size, with the CPU (NumPy) beside them;
4. times cold-start runs to a held-out accuracy on the GPU and the CPU, with where each
   step's time goes (``mlp-xp bench --to-accuracy``: medians, intervals, the verdict;
   ``--roofline FILE`` writes its roofline plot, ``--accuracy-json FILE`` every figure);
5. writes a Markdown report: the tables and the GPU targets, met or not.

Without a usable GPU it says why in one line and exits 2.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_peers import interleaved_medians, torch_epoch  # noqa: E402

from mlp_xp import MLP, TrainConfig, Trainer  # noqa: E402
from mlp_xp.backends import get_backend  # noqa: E402
from mlp_xp.cli.bench import benchmark_trainer  # noqa: E402
from mlp_xp.errors import MlpXpError  # noqa: E402

RECIPES = {
    "affine, momentum": {},
    "elastic, dropout 0.2": {"augment": "elastic", "dropout": 0.2},
    "adam": {"optimizer": "adam", "lr": 1e-3},
}


def gpu_tests() -> tuple[int, str]:
    """Run the GPU-marked tests, skips as failures; (exit status, pytest's summary line)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "--require-gpu", "-q", "-p",
         "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    return done.returncode, lines[-1] if lines else done.stderr.strip()[-200:]


def fast_versus_generic(backend, X, y) -> list[dict]:
    """Two epochs of each recipe with each step; the fast step's largest differences."""
    from mlp_xp.gpu import VERDICTS

    rows = []
    for name, recipe in RECIPES.items():
        runs = {}
        for step in ("generic", "fast"):
            model = MLP(backend=backend, seed=0, l2=1e-4)
            cfg = TrainConfig(epochs=2, batch_size=128, gpu_step=step, **recipe)
            trainer = Trainer(model, X, y, config=cfg)
            t0 = time.perf_counter()
            history = trainer.run()
            seconds = time.perf_counter() - t0
            runs[step] = (history.train_loss, model.params_numpy(), trainer.runner.name, seconds)
        (loss_g, p_g, _, _), (loss_f, p_f, kind, _) = runs["generic"], runs["fast"]
        param_diff = max(
            float(np.linalg.norm(p_f[k] - p_g[k]) / max(np.linalg.norm(p_g[k]), 1e-30)) for k in p_g
        )
        loss_diff = max(abs(a - b) / abs(b) for a, b in zip(loss_f, loss_g, strict=True))
        rows.append(
            {"recipe": name, "fast step used": kind == "fast",
             "parameters (relative)": param_diff, "losses (relative)": loss_diff}
        )  # fmt: skip
    rows.append({"verdicts": {str(k[1]): v or "passed" for k, v in VERDICTS.items()}})
    return rows


def timings(backend, X, y, batch_sizes, repeats, cpu: bool) -> list[dict]:
    """Interleaved epoch medians of each step kind, PyTorch eager CUDA and the CPU."""
    rows = []
    for bs in batch_sizes:
        runners, skipped = {}, {}
        for step in ("fast", "generic"):
            trainer = benchmark_trainer(backend, X, y, bs, 10**6, gpu_step=step)
            runners[f"mlp_xp {step} step"] = (trainer.run_epoch, backend.synchronize)
        try:
            import torch

            if not torch.cuda.is_available():
                raise ImportError("this torch has no CUDA device")
            runners["PyTorch eager CUDA"] = torch_epoch(X, y, bs, "cuda")
        except ImportError as exc:
            skipped["PyTorch eager CUDA"] = str(exc)
        if cpu:
            cpu_trainer = benchmark_trainer(get_backend("cpu"), X, y, bs, 10**6)
            runners["mlp_xp on the CPU"] = (cpu_trainer.run_epoch, lambda: None)
        medians = interleaved_medians(runners, repeats)
        torch_s = medians.get("PyTorch eager CUDA")
        for name, seconds in medians.items():
            rows.append(
                {"batch": bs, "run": name, "epoch_seconds": seconds,
                 "of PyTorch": seconds / torch_s if torch_s else None}
            )  # fmt: skip
        rows += [{"batch": bs, "run": k, "skipped": why} for k, why in skipped.items()]
    return rows


def markdown(info: dict) -> str:
    out = [
        f"# GPU report: {info['device']}",
        "",
        f"`python scripts/gpu_report.py` on {info['when']}; {info['samples']} synthetic "
        "MNIST-shaped samples an epoch, 784-300-100-10, SGD momentum 0.9 (the benchmark "
        "configuration of docs/benchmarks.md).",
        "",
        f"GPU tests (`pytest -m gpu --require-gpu`): {info['tests']}",
        "",
        "## The fast step against the generic step (2 epochs each way)",
        "",
        "| recipe | fast step used | parameters (relative) | losses (relative) |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in info["check"]:
        if "recipe" in r:
            out.append(
                f"| {r['recipe']} | {'yes' if r['fast step used'] else 'no'} | "
                f"{r['parameters (relative)']:.2g} | {r['losses (relative)']:.2g} |"
            )
    out += ["", "## Seconds per epoch (interleaved medians)", "",
            "| batch | run | s / epoch | of PyTorch |", "| ---: | --- | ---: | ---: |"]  # fmt: skip
    for r in info["timings"]:
        if "skipped" in r:
            out.append(f"| {r['batch']} | {r['run']} | skipped: {r['skipped']} | |")
            continue
        ratio = f"{r['of PyTorch']:.2f}x" if r["of PyTorch"] else ""
        out.append(f"| {r['batch']} | {r['run']} | {r['epoch_seconds']:.3f} | {ratio} |")
    if info.get("accuracy"):
        out += ["", "## Time to a held-out accuracy (`mlp-xp bench --to-accuracy`)", "",
                "```", info["accuracy"], "```"]  # fmt: skip
    out += ["", "## Targets", ""] + [f"- {t}" for t in info["targets"]]
    return "\n".join(out) + "\n"


def targets(rows: list[dict]) -> list[str]:
    def ratio(bs):
        fast = [r for r in rows if r.get("batch") == bs and r.get("run") == "mlp_xp fast step"]
        return fast[0].get("of PyTorch") if fast else None

    out = []
    for bs, goal, text in ((128, 0.5, "at most 0.5x"), (4096, 1.0, "no slower than")):
        got = ratio(bs)
        status = "not measured" if got is None else ("met" if got <= goal else "not met")
        measured = "" if got is None else f" ({got:.2f}x)"
        out.append(f"GPU, batch {bs}: {text} PyTorch eager CUDA's epoch time: {status}{measured}")
    return out


def time_to_accuracy(args) -> str:
    """``mlp-xp bench --to-accuracy`` on the GPU and the CPU: its tables and verdict."""
    from mlp_xp.cli.bench_accuracy import format_accuracy, run_to_accuracy

    devices = [args.device] if args.no_cpu else [args.device, "cpu"]
    sizes = [int(b) for b in args.accuracy_batch_sizes.split(",")]
    result = run_to_accuracy(devices, sizes, args.to_accuracy, args.seeds, args.max_epochs,
                             log=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
    if args.accuracy_json:
        import json

        Path(args.accuracy_json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.roofline:
        from mlp_xp.cli.roofline import roofline_plot

        roofline_plot(result, Path(args.roofline))
    return format_accuracy(result)


def _arguments(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="gpu", help="gpu or gpu:N (default gpu:0)")
    p.add_argument("--samples", type=int, default=60000)
    p.add_argument("--batch-sizes", default="128,4096")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="write the Markdown here (default: stdout)")
    p.add_argument("--skip-tests", action="store_true", help="do not run the GPU tests")
    p.add_argument("--no-cpu", action="store_true", help="leave the CPU out of the timings")
    p.add_argument("--to-accuracy", type=float, default=0.97, help="held-out accuracy to reach")
    p.add_argument("--seeds", type=int, default=6, help="runs per device and batch size")
    p.add_argument("--max-epochs", type=int, default=60)
    p.add_argument("--accuracy-batch-sizes", default="32,128,512")
    p.add_argument("--skip-accuracy", action="store_true", help="no runs to an accuracy")
    p.add_argument("--roofline", default=None, metavar="FILE.png")
    p.add_argument("--accuracy-json", default=None, metavar="FILE.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _arguments(argv)
    try:
        backend = get_backend(args.device)
        if backend.kind != "gpu":
            raise MlpXpError(f"{args.device} is not a GPU")
    except MlpXpError as exc:
        print(f"gpu_report: error: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    tests = "not run (--skip-tests)"
    if not args.skip_tests:
        status, summary = gpu_tests()
        tests = f"{'passed' if status == 0 else 'FAILED'}: {summary}"
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows = timings(backend, X, y, sizes, args.repeats, not args.no_cpu)
    info = {
        "device": backend.device,
        "when": time.strftime("%Y-%m-%d"),
        "samples": args.samples,
        "tests": tests,
        "check": fast_versus_generic(backend, X[:4096], y[:4096]),  # 32 steps an epoch
        "timings": rows,
        "targets": targets(rows),
        "accuracy": None if args.skip_accuracy else time_to_accuracy(args),
    }
    text = markdown(info)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

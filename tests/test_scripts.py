"""The standalone scripts run end to end on tiny settings."""

import json
from pathlib import Path

import numpy as np

from .helpers import idx_folder, load_module

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load(name):
    return load_module(SCRIPTS / f"{name}.py")


def test_accuracy_report_cross_validates(capsys):
    rows = load("accuracy_report").main("--folds 2 --epochs 1".split())
    assert [r["recipe"] for r in rows][:2] == [
        "default recipe",
        "baseline: plain SGD, 20 epochs, no augmentation",
    ]
    for r in rows:
        assert len(r["accuracy"]) == 2 and 0.5 < r["mean"] <= 1.0
    assert "2-fold stratified cross-validation" in capsys.readouterr().out


def test_learning_curve_draws_stratified_subsets_and_scores_unseen_digits(tmp_path, capsys):
    module = load("learning_curve")
    labels = np.repeat(np.arange(10), 50)
    picked = module.subset(labels, np.arange(0, 500, 2), 100, seed=0)
    assert picked.size == 100 and np.all(np.bincount(labels[picked]) == 10)
    assert np.all(picked % 2 == 0)  # only from the pool
    rows = module.main("--sizes 100,200 --folds 2 --seeds 1 --epochs 1".split())
    assert [r["size"] for r in rows] == [100, 200] and rows[0]["augment"] == "affine"
    assert all(len(r["accuracy"]) == 2 for r in rows)
    assert capsys.readouterr().out.splitlines()[2].startswith("| 100 | ")
    folder = idx_folder(tmp_path, n=200, test=True)  # scored on its t10k files
    rows = module.main(f"--data {folder} --sizes 50 --seeds 2 --epochs 1 --json".split())
    assert len(rows[0]["accuracy"]) == 2 and rows[0]["augment"] == "none"


def test_sklearn_comparison_runs_every_estimator_on_the_same_split(capsys):
    result = load("compare_sklearn").main(
        "--quick --sets diabetes,make_classification --seeds 2 --large-seeds 1 "
        "--samples 1200".split()
    )
    rows = result["rows"]
    assert [(r["set"], r["estimator"]) for r in rows] == [
        (s, e)
        for s in ("diabetes", "make_classification")
        for e in ("scikit-learn", "mlp_xp", "mlp_xp float64")
    ]
    for r in rows:
        assert r["epochs"] == 2 and np.isfinite(r["score_mean"]) and r["fit_seconds"] > 0
        assert r["metric"] == ("R^2" if r["set"] == "diabetes" else "accuracy")
    assert rows[0]["time_vs_sklearn"] == 1.0 and rows[0]["seeds"] == 2
    assert rows[3]["shape"] == [900, 100] and rows[3]["network"] == "(256, 128)"
    out = capsys.readouterr().out
    assert "| make_classification (900 x 100) | (256, 128) | mlp_xp |" in out


def test_gpu_report_writes_the_tables_docs_benchmarks_needs(request, tmp_path):
    from .conftest import simulated_gpu

    simulated_gpu(request)
    out = tmp_path / "report.md"
    # (the runs to an accuracy are new processes, where the simulated GPU is not)
    argv = "--skip-tests --skip-accuracy --samples 512 --repeats 1 --batch-sizes 128 --no-cpu --out"
    assert load("gpu_report").main([*argv.split(), str(out)]) == 0
    text = out.read_text()
    assert "# GPU report: gpu:0 (Simulated GPU 0" in text
    assert "| affine, momentum | yes |" in text and "| adam | yes |" in text
    assert "| 128 | mlp_xp fast step |" in text and "| 128 | mlp_xp generic step |" in text
    assert "| 128 | PyTorch eager CUDA | skipped:" in text
    assert "GPU, batch 128: at most 0.5x PyTorch eager CUDA's epoch time: not measured" in text


def test_gpu_report_times_runs_to_an_accuracy_with_the_roofline(tmp_path):
    """The report's ``bench --to-accuracy`` part (on the CPU here: it names any device)."""
    argv = (
        "--device cpu --no-cpu --to-accuracy 0.05 --seeds 1 --max-epochs 1 "
        f"--accuracy-batch-sizes 512 --roofline {tmp_path / 'r.png'} "
        f"--accuracy-json {tmp_path / 'a.json'}"
    )
    report = load("gpu_report")
    text = report.time_to_accuracy(report._arguments(argv.split()))
    assert "time to 5% held-out accuracy on mnist-5k" in text and "cpu at batch 512" in text
    result = json.loads((tmp_path / "a.json").read_text())
    assert [r["device"] for r in result["rows"]] == ["cpu"]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_gpu_report_without_a_usable_gpu_is_one_line_and_exit_2(request, capsys):
    from .conftest import simulated_gpu

    simulated_gpu(request, faults=["no-device"])
    assert load("gpu_report").main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no usable GPU: no CUDA device is visible" in err[0]

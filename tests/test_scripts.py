"""The standalone scripts run end to end on tiny settings."""

from pathlib import Path

from .helpers import load_module

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

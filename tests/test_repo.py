"""The repository keeps its promises: CI runs the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = next(line for line in ci.splitlines() if "pytest" in line)
    assert command.strip() in readme


def test_embedded_data_keeps_its_attribution():
    provenance = (ROOT / "data" / "mnist-5k" / "PROVENANCE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in provenance and "LeCun" in provenance

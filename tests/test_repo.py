"""The repository keeps its promises: CI runs the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    command = next(line for line in ci if line.endswith("python -m pytest"))
    assert command in readme
    assert ci.index(command) > next(i for i, line in enumerate(ci) if "ruff check" in line)


def test_the_version_has_one_source():
    import re

    import mlp_xp

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version = \"", pyproject, re.M)  # no literal version string
    assert 'version = { attr = "mlp_xp.__version__" }' in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {mlp_xp.__version__}" in changelog


def test_embedded_data_keeps_its_attribution():
    provenance = (ROOT / "data" / "mnist-5k" / "PROVENANCE.md").read_text(encoding="utf-8")
    assert "CC BY-SA 3.0" in provenance and "LeCun" in provenance

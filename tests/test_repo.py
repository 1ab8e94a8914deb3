"""The repository keeps its promises: CI runs the README's test command."""

import re
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


def test_the_api_reference_documents_every_public_name():
    import mlp_xp

    reference = (ROOT / "docs" / "api" / "index.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto\w+:: (mlp_xp\.\w+)", reference, re.M))
    documented |= {"mlp_xp.errors"} if "automodule:: mlp_xp.errors" in reference else set()
    missing = [
        name
        for name in mlp_xp.__all__
        if name != "__version__"
        and f"mlp_xp.{name}" not in documented
        and name not in mlp_xp.errors.__all__
    ]
    assert not missing, f"public names missing from docs/api/index.rst: {missing}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "sphinx-build -W" in ci and ".venv/bin/mypy" in ci

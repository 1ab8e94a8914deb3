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
    assert 'version = { attr = "mlp_xp._version.__version__" }' in pyproject
    from mlp_xp import _version

    assert mlp_xp.__version__ is _version.__version__
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


def _imports_of(module: str, path: Path, modules: dict) -> set:
    """The package's modules ``module`` imports, at the top or inside functions (imports
    under ``if TYPE_CHECKING:`` never run, so they do not count)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in list(ast.walk(tree)):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + [node.module or ""]).strip(".") if node.level else node.module
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            while name and name != module and not module.startswith(name + "."):
                found.add(name)  # importing a.b.c runs a.b's __init__ (and a's) first
                name = name.rpartition(".")[0]
    return found


def test_the_package_has_no_import_cycle_not_even_inside_functions():
    """Each outer concern depends on the core, never the other way round: a cycle hidden
    behind a function-level import fails the day someone moves that import to the top.
    Importing a module counts as importing the packages above it (their ``__init__`` runs)."""
    modules = {}
    for path in (ROOT / "mlp_xp").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {name: _imports_of(name, path, modules) for name, path in modules.items()}
    state: dict = {}

    def visit(name, trail):
        state[name] = "open"
        for nxt in sorted(graph[name]):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])

"""The version's one source: the build reads it (pyproject.toml), ``mlp_xp.__version__``
re-exports it, and submodules import it from here (not from the package, which imports
them).
"""

__version__ = "0.2.0"

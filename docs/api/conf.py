"""Sphinx configuration of the API reference, built from the package's docstrings.

Build it with ``sphinx-build -W --keep-going -b html docs/api docs/api/_build`` (``.ci/run``
does, warnings as errors). Only the standard library's Sphinx extensions are used.
"""

import mlp_xp

project = "mlp_xp"
release = version = mlp_xp.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}
# the optional libraries the docs need not install: the estimators' base classes come
# from scikit-learn, which the docs extra does install; CuPy is never imported
html_theme = "alabaster"
html_static_path: list[str] = []

"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` that train on the GPU.

Drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
:class:`~sklearn.neural_network.MLPRegressor`: the same parameter names with
the same meanings, the same fitted attributes and methods, and scikit-learn's
own input validation, so they work in ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``. The network is mlp_xp's :class:`~mlp_xp.model.MLP`,
trained by its :class:`~mlp_xp.train.Trainer` on the device ``device`` names
(``"auto"``: a CUDA GPU when one is usable, else the CPU), in float32 unless
``dtype="float64"``.

They keep scikit-learn's class names inside this namespace, so switching is
one import::

    from mlp_xp.sklearn import MLPClassifier      # was: from sklearn.neural_network ...

    clf = MLPClassifier(hidden_layer_sizes=(256, 128), max_iter=50, device="gpu")
    clf.fit(X_train, y_train).score(X_test, y_test)

Needs scikit-learn (``pip install ".[sklearn]"``). See ``docs/sklearn.md``
for what differs from scikit-learn and the side-by-side comparison.
"""

try:
    import sklearn  # noqa: F401 -- fail here, with the fix, rather than deep inside
except ImportError as exc:  # pragma: no cover - the test extra installs scikit-learn
    raise ImportError("mlp_xp.sklearn needs scikit-learn: pip install '.[sklearn]'") from exc

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

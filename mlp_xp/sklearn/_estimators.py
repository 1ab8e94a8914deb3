"""``MLPClassifier`` and ``MLPRegressor``: the targets each learns, and its predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ..arrays import ArrayLike
from ..backends import Backend
from ..errors import DataError
from ..model import MLP
from ._base import BaseMLP
from ._inputs import device_rows, host_targets, on_a_device
from ._params import ATTRIBUTES_DOC, PARAMETERS_DOC

__all__ = ["MLPClassifier", "MLPRegressor"]

_FLOATS = (np.float64, np.float32)


class _Predicting(BaseMLP):
    def _validated(self, X: ArrayLike) -> Any:
        check_is_fitted(self)
        if on_a_device(X):  # checked and used where it is: no host round trip
            return device_rows(self, X, self._live()[0].backend, reset=False, dtype=self.dtype)
        return validate_data(self, X, reset=False, dtype=_FLOATS)

    def _validated_pair(
        self, X: ArrayLike, y: ArrayLike, backend: Backend, *, reset: bool, regress: bool
    ) -> tuple:
        """``(X, y)`` checked: host rows by scikit-learn, device rows on their device."""
        if not on_a_device(X):
            if regress:
                return validate_data(
                    self, X, y, reset=reset, dtype=_FLOATS, multi_output=True, y_numeric=True
                )
            return validate_data(self, X, y, reset=reset, dtype=_FLOATS)
        X = device_rows(self, X, backend, reset=reset, dtype=self.dtype)
        return X, host_targets(y, backend, X.shape[0], numeric=regress, multi=regress)


class MLPClassifier(ClassifierMixin, _Predicting):
    __doc__ = f"""Multilayer perceptron classifier: softmax output (a sigmoid for two classes).

    scikit-learn's :class:`~sklearn.neural_network.MLPClassifier`, trained by
    mlp_xp on a CPU or a CUDA GPU. Class labels may be of any type (strings,
    non-contiguous integers); ``classes_`` holds them, sorted.

    Parameters
    ----------{PARAMETERS_DOC}
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,){ATTRIBUTES_DOC}
    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlp_xp.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=300, random_state=0, device="cpu").fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    def fit(self, X: ArrayLike, y: ArrayLike) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y``; returns ``self``."""
        return self._fit(X, y, incremental=False)

    def partial_fit(
        self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None
    ) -> MLPClassifier:
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer.

        ``classes`` (every label there will be) is required on the first call.
        """
        return self._fit(X, y, incremental=True, classes=classes)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each row."""
        index = self._outputs(self._validated(X), "predict")
        return self.classes_[index]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        p = self._outputs(self._validated(X), "predict_proba")
        return np.hstack([1 - p, p]) if self.n_outputs_ == 1 else p

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        return np.log(self.predict_proba(X))

    def _validate_training(
        self, X: ArrayLike, y: ArrayLike, backend: Backend, *, reset: bool,
        incremental: bool, classes: ArrayLike | None = None,
    ) -> tuple:  # fmt: skip
        X, y = self._validated_pair(X, y, backend, reset=reset, regress=False)
        check_classification_targets(y)
        if reset:
            if incremental and classes is None:
                raise DataError("classes must be passed on the first call to partial_fit")
            labels = unique_labels(y if classes is None else classes)
            if len(labels) < 2:
                raise DataError(
                    f"{type(self).__name__} needs at least 2 classes; y has 1 class "
                    f"({labels.tolist()[0]!r})"
                )
            self.classes_ = labels
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise DataError(
                f"classes {unique_labels(classes).tolist()} differ from those of the first "
                f"call to partial_fit, {self.classes_.tolist()}"
            )
        known = np.isin(y, self.classes_)
        if not known.all():
            unseen = unique_labels(y[~known]).tolist()
            raise DataError(
                f"y has labels {unseen} that are not in classes_ {self.classes_.tolist()}"
                + ("" if incremental else "; warm_start needs the classes of the first fit")
            )
        return X, np.searchsorted(self.classes_, y)

    def _output_layer(self) -> tuple[str, int]:
        n = len(self.classes_)
        return ("binary", 1) if n == 2 else ("classify", n)

    def _validation_score(self, model: MLP, X: Any, labels: np.ndarray) -> float:
        return float(np.mean(model.backend.get(model.predict(X)) == labels))


class MLPRegressor(RegressorMixin, _Predicting):
    __doc__ = f"""Multilayer perceptron regressor: linear output and squared error, any targets.

    scikit-learn's :class:`~sklearn.neural_network.MLPRegressor`, trained by
    mlp_xp on a CPU or a CUDA GPU. ``y`` of shape (n_samples,) or
    (n_samples, n_targets); a single target is predicted as a 1-d array.

    Parameters
    ----------{PARAMETERS_DOC}
    Attributes
    ----------{ATTRIBUTES_DOC}
    Examples
    --------
    >>> import numpy as np
    >>> from mlp_xp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200)[:, None]
    >>> reg = MLPRegressor((32,), "tanh", max_iter=500, random_state=0, device="cpu")
    >>> reg.fit(X, np.c_[X[:, 0] ** 2, -X[:, 0]]).predict(X[:2]).shape
    (2, 2)
    """

    def fit(self, X: ArrayLike, y: ArrayLike) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y``; returns ``self``."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> MLPRegressor:
        """One epoch over ``(X, y)``, continuing from the current weights and optimizer."""
        return self._fit(X, y, incremental=True)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets: shape (n_samples,) for one target, else (n_samples, n_targets)."""
        out = self._outputs(self._validated(X), "predict")
        return out.ravel() if out.shape[1] == 1 else out

    def _validate_training(
        self, X: ArrayLike, y: ArrayLike, backend: Backend, *, reset: bool,
        incremental: bool, classes: ArrayLike | None = None,
    ) -> tuple:  # fmt: skip
        X, y = self._validated_pair(X, y, backend, reset=reset, regress=True)
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        if reset:
            self._n_targets = y.shape[1]
        elif y.shape[1] != self.n_outputs_:
            raise DataError(f"y has {y.shape[1]} targets, the fitted network {self.n_outputs_}")
        return X, y

    def _output_layer(self) -> tuple[str, int]:
        return "regress", self._n_targets

    def _validation_score(self, model: MLP, X: Any, y: np.ndarray) -> float:
        return float(r2_score(y, model.backend.get(model.predict(X))))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

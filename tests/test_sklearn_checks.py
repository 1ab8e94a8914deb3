"""scikit-learn's own estimator checks, on both estimators as constructed by default.

No check is expected to fail: scikit-learn's MLPClassifier declares none, and
neither estimator here declares any (``expected_failed_checks`` is not used).
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks  # the test extra has it

from mlp_xp.sklearn import MLPClassifier, MLPRegressor


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)

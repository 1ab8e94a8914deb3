"""The primal perceptron: convergence on separable data, honest failure on XOR."""

import numpy as np
import pytest

from mlp_xp.cli import main
from mlp_xp.errors import DataError
from mlp_xp.perceptron import perceptron

AND = (np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([-1, -1, -1, 1]))
XOR = (AND[0], np.array([-1, 1, 1, -1]))


def test_converges_on_separable_data_on_every_backend(backend):
    result = perceptron(*AND, backend=backend, max_epochs=100)
    assert result.converged and result.mistakes[-1] == 0
    np.testing.assert_array_equal(result.predict(AND[0]), AND[1])


def test_follows_the_update_rule_by_hand():
    # order kept: x=(1,0) y=+1 is a mistake at w=0 -> w=(1,0), b=1; then x=(0,1) y=-1:
    # 0*1 + 1*0 + 1 = 1 > 0 but y=-1 -> mistake -> w=(1,-1), b=0
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    r = perceptron(X, np.array([1, -1]), max_epochs=1, seed=None, backend="cpu")
    np.testing.assert_allclose(r.w, [1.0, -1.0])
    assert r.b == 0.0 and r.mistakes == [2] and not r.converged


def test_reports_non_convergence_on_xor(backend):
    result = perceptron(*XOR, backend=backend, max_epochs=25)
    assert not result.converged and result.epochs == 25
    assert "did not converge in 25 epochs" in result.message()


def test_separable_digit_pair_converges_and_agrees_across_backends(digits):
    keep = (digits.labels == 0) | (digits.labels == 1)
    X = digits.images[keep].reshape(-1, 784)[::5] / 255.0
    y = (digits.labels[keep][::5] == 1).astype(int)
    a = perceptron(X, y, backend="cpu", max_epochs=50)
    b = perceptron(X, y, backend="array-api-strict", max_epochs=50)
    assert a.converged and a.epochs == b.epochs
    np.testing.assert_allclose(a.w, b.w)


def test_bad_labels_are_refused():
    with pytest.raises(DataError, match="labels must be"):
        perceptron(AND[0], np.array([0, 1, 2, 1]))


def test_cli_reports_both_outcomes(capsys):
    assert main("perceptron --toy and --json --device cpu".split()) == 0
    assert '"converged": true' in capsys.readouterr().out
    assert main("perceptron --toy xor --max-epochs 10 --device cpu".split()) == 0
    assert "did not converge in 10 epochs" in capsys.readouterr().out

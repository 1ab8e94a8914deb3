"""One table of parameter constraints: its messages, and that the registries match it."""

import argparse
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlp_xp import constraints as C
from mlp_xp import functional as F
from mlp_xp.errors import ConfigError
from mlp_xp.optim import make_optimizer
from mlp_xp.train.augment import make_augmenter
from mlp_xp.train.schedules import SCHEDULES


def test_the_named_choices_are_exactly_what_the_modules_implement():
    assert tuple(F.ACTIVATIONS) == C.ACTIVATIONS
    assert tuple(F.LOSSES) == C.TASKS
    assert tuple(SCHEDULES) == C.SCHEDULES
    for name in C.AUGMENTATIONS:
        aug = make_augmenter(name)
        off = name in ("none", "auto")  # auto is decided by the data source, before training
        assert (aug is None) == off and (aug is None or aug.kind == name)
    for name in C.OPTIMIZERS:
        assert make_optimizer(name, {}, None, 0.1).name in ("sgd", "adam")


@pytest.mark.parametrize(
    "name, value, normalised",
    [
        ("epochs", 3, 3),
        ("epochs", np.int64(3), 3),
        ("lr", 1, 1.0),
        ("lr", np.float32(0.5), 0.5),
        ("momentum", None, None),
        ("momentum", 0, 0.0),
        ("dropout", 0.0, 0.0),
        ("optimizer", "adam", "adam"),
        ("seed", 0, 0),
        ("positive", 9, 9),
        ("sklearn_batch_size", "auto", "auto"),
        ("sklearn_batch_size", np.int32(64), 64),
        ("early_stopping", np.bool_(True), True),
        ("verbose", False, False),
        ("verbose", 2, 2),
    ],
)
def test_accepted_values_come_back_as_plain_python(name, value, normalised):
    out = C.validate(name, value)
    assert out == normalised and type(out) is type(normalised)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("epochs", 0, "epochs must be an integer >= 1, got 0"),
        ("epochs", 2.0, "epochs must be an integer >= 1, got 2.0"),
        ("epochs", True, "epochs must be an integer >= 1, got True"),
        ("lr", 0.0, "learning rate must be a finite number > 0, got 0.0"),
        ("lr", float("inf"), "learning rate must be a finite number > 0, got inf"),
        ("lr", float("nan"), "learning rate must be a finite number > 0, got nan"),
        ("lr", "0.1", "learning rate must be a finite number > 0, got '0.1'"),
        ("momentum", 1.0, "momentum must be a finite number in [0, 1) or None, got 1.0"),
        ("dropout", -0.1, "dropout must be a finite number in [0, 1), got -0.1"),
        ("val_fraction", 1.0, "validation fraction must be a finite number in (0, 1), got 1.0"),
        ("seed", -1, "seed must be an integer >= 0, got -1"),
        ("positive", 10, "the positive digit must be an integer in [0, 9] or None, got 10"),
        ("optimizer", "rmsprop", "optimizer must be one of sgd, momentum, adam, got 'rmsprop'"),
        ("sklearn_batch_size", 0, "batch_size must be 'auto' or an integer >= 1, got 0"),
        ("sklearn_batch_size", "all", "batch_size must be 'auto' or an integer >= 1, got 'all'"),
        ("warm_start", 1, "warm_start must be a boolean, got 1"),
        ("verbose", -1, "verbose must be a boolean or an integer >= 0, got -1"),
    ],
)
def test_one_error_format(name, value, message):
    with pytest.raises(ConfigError) as err:
        C.validate(name, value)
    assert str(err.value) == message


def test_argument_types_parse_then_check_with_the_same_sentence():
    lr = C.argument_type("lr")
    assert lr("1e-3") == 0.001 and C.argument_type("epochs")(" 12 ") == 12
    with pytest.raises(
        argparse.ArgumentTypeError, match="learning rate must be a finite number > 0, got 'x'"
    ):
        lr("x")
    with pytest.raises(argparse.ArgumentTypeError, match="got '-1'"):
        C.argument_type("seed")("-1")
    assert C.argument_type("sklearn_batch_size")("auto") == "auto"
    assert C.argument_type("sklearn_batch_size")("32") == 32
    assert C.argument_type("early_stopping")("True") is True
    with pytest.raises(argparse.ArgumentTypeError, match="must be a boolean, got 'maybe'"):
        C.argument_type("warm_start")("maybe")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True)))
def test_the_seed_row_accepts_exactly_the_seeds_numpy_accepts(seed):
    try:
        np.random.default_rng(seed)
        numpy_accepts = True
    except (ValueError, TypeError):
        numpy_accepts = False
    try:
        C.validate("seed", seed)
        table_accepts = True
    except ConfigError as exc:
        assert str(exc) == f"seed must be an integer >= 0, got {seed!r}"
        table_accepts = False
    assert table_accepts == numpy_accepts


def test_a_bool_is_no_seed_though_numpy_would_take_it():
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got True"):
        C.validate("seed", True)


@pytest.mark.parametrize("seed", ["-1", "-99999999999999999999", "1.5", "9" * 5000])
def test_a_seed_numpy_refuses_is_one_line_and_exit_2_from_the_real_command(tmp_path, seed):
    out = subprocess.run(
        [sys.executable, "-m", "mlp_xp", "train", "--seed", seed, "--out", str(tmp_path / "m.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"mlp-xp train: error: argument --seed: seed must be an integer >= 0, got {seed!r}"
    ]
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_an_integer_past_floats_range_is_the_one_line_config_error(value):
    with pytest.raises(ConfigError, match="learning rate must be a finite number > 0, got "):
        C.validate("lr", value)

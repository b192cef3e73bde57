"""The error table of docs/errors.md: the errors no other test triggers, and a check that every
test the table names exists (so the table cannot rot)."""

import ast
import glob
import os
import pathlib
import re

import keras
import numpy as np
import pytest
from keras import layers as L

import keras_patterns as kp
from keras_patterns.analyzers.registry import register

import builders
import paths  # noqa: E402

DOC = pathlib.Path(paths.ROOT) / "docs" / "errors.md"


@pytest.fixture(scope="module")
def mlp():
    return builders.mlp((4, 5, 3), names=("d1", "d2"), seed=0)


@pytest.fixture(scope="module")
def two_inputs():
    return builders.two_inputs()


def test_softmax_inside_the_model():
    inp = keras.Input((4,))
    h = L.Softmax()(L.Dense(3)(inp))
    model = keras.Model(inp, L.Dense(2)(h))
    with pytest.raises(kp.NotAnalyzeableModelError, match=r"Softmax inside the model .*model_wo_softmax"):
        kp.create_analyzer("gradient", model)


def test_subclassed_model_has_no_layer_graph():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    model = Sub()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(kp.NotAnalyzeableModelError, match="has no layer graph.*gradient family"):
        kp.create_analyzer("lrp.epsilon", model)


def test_perturbing_analyzers_need_float_inputs():
    inp = keras.Input((5,), dtype="int32")
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Embedding(10, 3)(inp))))
    with pytest.raises(ValueError, match="needs float inputs. Received integer inputs"):
        kp.create_analyzer("smoothgrad", model)


def test_duplicate_analyzer_name():
    with pytest.raises(ValueError, match="An analyzer named 'gradient' is already registered"):
        register("gradient")(type("Dummy", (), {}))


def test_random_stddev_and_smoothgrad_seed(mlp):
    with pytest.raises(ValueError, match=r"`stddev` must be a finite number >= 0. Received: stddev=-1"):
        kp.create_analyzer("random", mlp, stddev=-1)
    with pytest.raises(ValueError, match=r"`seed` must be an int or None. Received: seed=1.5"):
        kp.create_analyzer("smoothgrad", mlp, seed=1.5)


def test_input_dict_and_batch_size_mismatch(two_inputs):
    analyzer = kp.create_analyzer("gradient", two_inputs)
    with pytest.raises(ValueError, match=r"missing model inputs \['b'\]"):
        analyzer.analyze({"a": np.zeros((2, 3), "float32")})
    with pytest.raises(ValueError, match=r"same batch size. Received: \[2, 3\]"):
        analyzer.analyze([np.zeros((2, 3), "float32"), np.zeros((3, 2), "float32")])


def test_bad_rule_condition_and_unsaveable_rules(mlp, tmp_path):
    with pytest.raises(TypeError, match="A rule condition must be a layer class"):
        kp.create_analyzer("lrp", mlp, rule=[(3, "Epsilon")])
    analyzer = kp.create_analyzer("lrp", mlp, rule=[(L.Dense, "Epsilon")])
    with pytest.raises(ValueError, match=r"cannot be saved. Use rule names"):
        analyzer.save(str(tmp_path / "a.kpa"))


def test_bad_rule_type(mlp):
    with pytest.raises(TypeError, match=r"`rule` must be a rule name, a Rule.*Received: rule=3"):
        kp.create_analyzer("lrp", mlp, rule=3)


def test_patterns_of_the_wrong_count_or_type(mlp):
    with pytest.raises(ValueError, match=r"Expected 2 patterns, one per kernel layer"):
        kp.create_analyzer("pattern.net", mlp, patterns=[np.zeros((4, 5))])
    with pytest.raises(TypeError, match=r"`patterns` must be a dict .*Received: str"):
        kp.create_analyzer("pattern.net", mlp, patterns="relu")


def test_fit_data_errors(mlp):
    analyzer = kp.create_analyzer("pattern.net", mlp)
    with pytest.raises(TypeError, match=r"a generator function\? call it"):
        analyzer.fit(lambda: iter([np.zeros((2, 4), "float32")]), verbose=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        analyzer.fit(iter([]), verbose=0)


def test_pattern_fit_without_kernel_layers():
    model = keras.Sequential([keras.Input((4,)), L.ReLU()])
    with pytest.raises(ValueError, match="has no kernel layer"):
        kp.create_analyzer("pattern.net", model).fit(np.zeros((2, 4), "float32"), verbose=0)


# --------------------------------------------------------------------------------- the table


def _table_tests():
    """``(file, function)`` of every test named in the table's last column."""
    names = re.findall(r"`(test_\w+)\.py::(test_\w+)`", DOC.read_text())
    assert names, f"no tests named in {DOC}"
    return names


def test_every_test_named_in_the_error_table_exists():
    # Test files sit in folders by pipeline stage: find each by name, read its top-level functions.
    files = {os.path.basename(f)[:-3]: f for f in glob.glob(os.path.join(paths.TESTS, "**", "test_*.py"),
                                                          recursive=True)}
    missing = []
    for module, function in _table_tests():
        if module not in files:
            missing.append(f"{module}.py")
            continue
        with open(files[module]) as f:
            tree = ast.parse(f.read())
        if function not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}:
            missing.append(f"{module}.py::{function}")
    assert not missing, f"docs/errors.md names tests that do not exist: {missing}"


def test_every_table_row_names_a_test():
    rows = [line for line in DOC.read_text().splitlines()
            if line.startswith("|") and not re.match(r"\|\s*(Cause|-)", line)]
    assert rows
    for row in rows:
        assert re.search(r"`test_\w+\.py::test_\w+`", row.split("|")[-2]), f"row without a test: {row}"

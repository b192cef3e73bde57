import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import sys  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

#: Test files whose assertions compare floating-point maps against references with a tolerance
#: (goldens, replicas, identities, batch consistency). The README's test command runs them a second
#: time with ``TF_ENABLE_ONEDNN_OPTS=0``: other CPU kernels, a cheap proxy for another machine.
NUMERICS_FILES = {
    "test_contract.py", "test_golden_innvestigate1.py", "test_golden_innvestigate2.py",
    "test_gradient_family.py", "test_lrp_identities.py", "test_lrp_rules.py",
    "test_patterns_replica.py", "test_patterns_toy.py", "test_properties.py", "test_canonizers.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if os.path.basename(str(item.fspath)) in NUMERICS_FILES:
            item.add_marker(pytest.mark.numerics)


def pytest_report_header(config):
    return f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '<unset>')}"


# ------------------------------------------------------------------------------------ fixtures
# Models from fixtures are shared (session scope): use them read-only (the contract and state tests
# check that analyzers never change a model). A test that trains or edits a model builds its own with
# ``builders`` or ``zoo.build``.


@pytest.fixture
def seeded():
    """Seeds Python, NumPy, TensorFlow and Keras (``keras.utils.set_random_seed(0)``); returns a fresh
    ``np.random.default_rng(0)`` for the test's data."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    return np.random.default_rng(0)


def pytest_generate_tests(metafunc):
    # ``zoo_name`` runs a test over every small zoo model; zoo (and Keras) are imported only then.
    if "zoo_name" in metafunc.fixturenames:
        import zoo

        metafunc.parametrize("zoo_name", sorted(zoo.ZOO), scope="session")


@pytest.fixture(scope="session")
def zoo_model(zoo_name):
    """Every model of the small zoo in turn (``zoo.cached``: built once per session, read-only)."""
    import zoo

    return zoo.cached(zoo_name)


@pytest.fixture(scope="session")
def zoo_inputs(zoo_model):
    """Three deterministic inputs for ``zoo_model`` (``zoo.inputs_for(model, n=3, seed=0)``)."""
    import zoo

    return zoo.inputs_for(zoo_model, n=3, seed=0)


@pytest.fixture(scope="session")
def small_mlp():
    """``5 -> Dense(4, relu) -> Dense(3)``, seed 0, named ``"small_mlp"`` (read-only)."""
    import builders

    return builders.mlp((5, 4, 3), seed=0, name="small_mlp")


@pytest.fixture(scope="session")
def small_cnn():
    """``(8, 8, 1) -> Conv2D(4, 3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(3)``, seed 0 (read-only)."""
    import builders

    return builders.small_cnn((8, 8, 1), 4, 3, seed=0)


@pytest.fixture(scope="session")
def two_input_model():
    """Inputs ``"a"`` (3,) and ``"b"`` (2,), concatenated, ``Dense(2)``, seed 0 (read-only)."""
    import builders

    return builders.two_inputs(seed=0)

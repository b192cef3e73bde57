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

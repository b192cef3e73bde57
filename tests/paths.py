"""Paths the tests use, wherever a test file sits: the tests folder, the repository root, the
golden files."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
GOLDEN = os.path.join(TESTS, "golden")

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

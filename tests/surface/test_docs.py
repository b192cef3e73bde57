"""The documentation builds without a single Sphinx warning (``sphinx-build -W``)."""

import os
import subprocess
import sys

import pytest
import paths  # noqa: E402

DOCS = os.path.join(paths.ROOT, "docs")


def _have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(
    not (_have("sphinx") and _have("myst_parser")),
    reason="sphinx and myst-parser are not installed (pip install -e '.[test]' installs them)",
)
def test_docs_build_without_warnings(tmp_path):
    env = dict(os.environ)
    root = os.path.dirname(DOCS)
    # autodoc must import this checkout's package, not another installed copy.
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
           "-d", str(tmp_path / "doctrees"), DOCS, str(tmp_path / "html")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, (
        f"sphinx-build -W failed with exit code {proc.returncode}.\n{proc.stdout[-4000:]}\n"
        f"{proc.stderr[-8000:]}"
    )
    api = (tmp_path / "html" / "api.html").read_text(encoding="utf-8")
    # Docstring ```python fences render as highlighted code, not as inline garble.
    assert "```" not in api
    assert "highlight-python" in api

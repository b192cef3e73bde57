"""Sphinx configuration. Build with: pip install -e ".[docs]" && sphinx-build docs docs/_build"""

project = "keras_patterns"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
napoleon_google_docstring = True
autodoc_member_order = "bysource"
exclude_patterns = ["_build"]
html_theme = "alabaster"

"""Sphinx configuration.

Build with: ``pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build``.
"""

import re

project = "keras_patterns"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]

# Docstrings are Keras-style (Google sections: Args, Returns, Raises, Example).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_admonition_for_examples = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# Markdown pages: "page.md#section" links resolve to the section's heading.
myst_heading_anchors = 3

_FENCE_OPEN = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")


def fences_to_code_blocks(lines):
    """Rewrites Markdown code fences in a docstring as ``.. code-block::`` directives.

    Args:
        lines: the docstring's lines (as autodoc passes them, already dedented).

    Returns:
        A new list of lines where each ```` ```python ... ``` ```` block is a
        ``.. code-block:: python`` directive with its content indented by 4 spaces.
    """
    out, i = [], 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        indent, language = match.group(1), match.group(2) or "text"
        body, i = [], i + 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end of the docstring)
        if out and out[-1].strip():
            out.append("")
        out.extend([f"{indent}.. code-block:: {language}", ""])
        for line in body:
            stripped = line[len(indent):] if line.startswith(indent) else line.lstrip()
            out.append(f"{indent}    {stripped}" if stripped.strip() else "")
        out.append("")
    return out


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = fences_to_code_blocks(lines)


def setup(app):
    # Priority < 500 so that the fences become code blocks before napoleon parses the sections.
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)

"""Sphinx configuration of chunkflow's API reference (`make docs`).

Built from the docstrings by autodoc + napoleon. Nothing is fetched: no intersphinx, the
built-in theme, and every module is imported for real from the checkout.
"""

import sys
from pathlib import Path

# The checkout this file is in, whether or not chunkflow is installed from it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import chunkflow  # noqa: E402

project = "chunkflow"
author = "chunkflow developers"
release = version = chunkflow.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]

# Our docstrings write names in single backticks (`BoundingBox.grow`, `z0-z1_y0-y1_x0-x1`):
# a name that is documented becomes a link, anything else is shown as code.
default_role = "py:obj"

autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "both"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

smartquotes = False  # quotes in docstrings stay as typed: names and values copy as they are

html_theme = "alabaster"
html_static_path = []
html_show_sourcelink = False
exclude_patterns = ["_build"]

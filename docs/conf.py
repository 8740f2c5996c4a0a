"""Sphinx configuration for the Flask-Notifications documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from flask_notifications import __version__  # noqa: E402

# -- Project -------------------------------------------------------------------

project = "Flask-Notifications"
author = "Flask-Notifications developers"
copyright = "2015 CERN, 2026 Flask-Notifications developers"
release = __version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False

# The docs build offline: no inventories are fetched.
intersphinx_mapping = {}

autodoc_member_order = "bysource"

# -- HTML ----------------------------------------------------------------------

html_theme = "alabaster"
html_theme_options = {
    "description": "Real-time notifications for Flask",
}

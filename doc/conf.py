"""Sphinx configuration for the radio_clean documentation."""

import os
import sys

# doc/_ext holds the extension that writes the parameter, task and API tables from the code.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "radio_clean"
copyright = "2026, radio_clean developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "radio_clean_docs",
]
html_theme = "alabaster"
# The generated parameter and dataset tables have five or six columns.
html_theme_options = {"page_width": "1200px"}
exclude_patterns = ["_build"]

# As in Rubin's packages: `name` in a docstring is a link to that Python object when it can be found.
default_role = "py:obj"

# Docstrings are numpydoc style.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"

# Not an API: the CASA site configuration file that casatools executes (CASASITECONFIG).
radio_clean_api_exclude = ["radio_clean.casasiteconfig"]

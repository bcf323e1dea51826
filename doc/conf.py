"""Sphinx configuration for the radio_clean documentation."""

project = "radio_clean"
copyright = "2026, radio_clean developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.intersphinx"]
html_theme = "alabaster"
exclude_patterns = ["_build"]

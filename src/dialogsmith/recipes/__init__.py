"""Recipes that compose the stages' public functions: the DialoGPT drop-in (``dialogpt-tsv``)."""

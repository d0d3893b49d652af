"""Runnable examples: ``python -m fastspike.examples.digits``."""

"""Runnable examples of using postroom (not installed with the package)."""

"""Metrics, their HTTP endpoint and the log formats."""

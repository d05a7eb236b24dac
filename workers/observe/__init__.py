"""Metrics, their HTTP endpoint, the log formats, and tracing (OpenTelemetry, opt-in)."""

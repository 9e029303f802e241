"""Performance measurements (scripts run with ``python -m benchmarks.perf.<name>``)."""

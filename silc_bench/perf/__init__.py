"""Performance measurements (scripts run with ``python -m silc_bench.perf.<name>``)."""

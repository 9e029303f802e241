"""Benchmark harnesses, the registry, suites, the result store and the table/plot builders."""

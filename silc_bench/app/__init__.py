"""Application glue shared by commands: suites, regression, the train-time evaluation hook, the world cache."""

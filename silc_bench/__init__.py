"""silc-bench's top floor: the ``silc-bench`` command line and the application glue that wires silc, adapters
and benchmarks together (running a suite, regression, the train-time evaluation hook, the world cache)."""

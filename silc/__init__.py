"""silc-bench core: the SiLC trainer, its config, model, losses, data and the synthetic world."""

__version__ = "0.1.0"

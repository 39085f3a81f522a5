"""batchscore's version, kept where every layer may read it (outputs and model cards record it)."""

__version__ = "0.1.0"

"""batchscore: batch sentiment scoring of review text with a BiLSTM."""

from batchscore.xla_flags import apply_default_flags

__version__ = "0.1.0"

apply_default_flags()  # must run before JAX initialises its CPU backend

"""batchscore: batch sentiment scoring of review text with a BiLSTM."""

__version__ = "0.1.0"

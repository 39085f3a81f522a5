"""The public import path of the Spark helper (`from batchscore.spark import score_dataframe`)."""

from batchscore.interfaces.spark import score_dataframe

__all__ = ["score_dataframe"]

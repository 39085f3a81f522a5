"""Input discovery, streaming readers and the crash-safe Parquet writer (no model knowledge)."""

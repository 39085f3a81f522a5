"""Data studies: how the film-held-out split is made and what it holds (not speed benchmarks)."""

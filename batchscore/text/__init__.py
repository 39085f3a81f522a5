"""Text in, token ids out: the tokenizer, the vocabulary, encoding to ids and per-row checks.
Pure pyarrow and numpy; shared by scoring and training."""

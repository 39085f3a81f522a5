"""The network and its file: the BiLSTM's arithmetic (plain JAX for scoring, Flax for training), the
cuDNN path, the probability and label rule, the language-model head and the bundle on disk."""

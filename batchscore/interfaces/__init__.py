"""How users reach batchscore: the CLI, the Python API, the Spark helper and nightly jobs. Each
turns its caller's request into one pipeline or training call and its result into output."""

"""Scoring rows in memory, with no files, threads or clusters: the device and XLA setup, the compute
plan (device, precision, batch plan), bucketing, the jitted forward pass, rows and the output table.
The pipeline and the Python API share it."""

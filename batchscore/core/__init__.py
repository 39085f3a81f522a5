"""What every engine and the Python API share, with no files, threads or clusters in it: rows
(clean, tokenize, flag), the compute plan (device, precision, batch plan) and the output table."""

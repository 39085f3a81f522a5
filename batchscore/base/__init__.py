"""The bottom layer: what the process agrees with the outside world before any data is read, namely
exit codes and the errors that carry them, environment variables, the settings table and signals."""

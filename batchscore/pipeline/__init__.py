"""A file run, top to bottom: plan (inputs, outputs, refusals, preflight) -> tasks (one per output:
lock, fingerprint, resume decision) -> an engine's stream of scored windows and file ends -> the
sink (commits, assembles) -> the verdict (exit codes). run.py reads in that order."""

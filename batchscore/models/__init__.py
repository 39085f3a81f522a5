"""The bundled default model (package data, found via importlib.resources)."""

"""Bundled default checkpoints (installed as the package ``gencli._bundled``)."""

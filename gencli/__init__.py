"""gencli: a command-line toolkit for generative image models."""

__version__ = "0.1.0"

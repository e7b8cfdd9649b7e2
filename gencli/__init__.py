"""gencli: a command-line toolkit for generative image models, and its Python API.

``gencli.load``, ``gencli.translate``, ``gencli.evaluate`` and ``gencli.export`` (see :mod:`gencli.api`) are imported
on first use, so ``import gencli`` (and ``gencli --help``) stays free of torch.
"""

__version__ = "0.1.0"

__all__ = ["load", "translate", "evaluate", "export", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - lazy API (PEP 562)
    if name in ("load", "translate", "evaluate", "export", "iter_translate"):
        from gencli import api

        return getattr(api, name)
    raise AttributeError(f"module 'gencli' has no attribute {name!r}")

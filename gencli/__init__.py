"""gencli: a command-line toolkit for generative image models, and its Python API.

``gencli.load``, ``gencli.translate`` and ``gencli.evaluate`` (see :mod:`gencli.api`) are imported
on first use, so ``import gencli`` (and ``gencli --help``) stays free of torch.
"""

__version__ = "0.1.0"

__all__ = ["load", "translate", "evaluate", "__version__"]


def __getattr__(name: str):  # noqa: ANN202 - lazy API (PEP 562)
    if name in ("load", "translate", "evaluate", "iter_translate"):
        from gencli import api

        return getattr(api, name)
    raise AttributeError(f"module 'gencli' has no attribute {name!r}")

"""batchscore: batch sentiment scoring of review text with a BiLSTM."""

from typing import TYPE_CHECKING

from batchscore.base.version import __version__ as __version__
from batchscore.inference.xla_flags import apply_default_flags

if TYPE_CHECKING:
    from batchscore.interfaces.api import Model, load_model


apply_default_flags()  # must run before JAX initialises its CPU backend

__all__ = ["Model", "load_model"]


def __dir__() -> list[str]:
    """What `dir(batchscore)` and completion show: the lazy names too."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str):
    """`batchscore.load_model` / `batchscore.Model`, imported on first use: the CLI must start (and
    take over signals) before JAX is imported, so the package root stays light."""
    if name in __all__:
        from batchscore.interfaces import api

        return getattr(api, name)
    raise AttributeError(f"module 'batchscore' has no attribute {name!r}")

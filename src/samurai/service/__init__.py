"""The tracking service: HTTP API, job store, worker processes and the web page.

Start it with ``samurai serve`` (or ``python -m samurai.service``); build the ASGI app yourself
with `create_app`. Importing this package starts nothing, and loads the web stack only when
`create_app` is used (worker processes import the store and schemas alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samurai.service.app import create_app
    from samurai.service.schemas import JobParams, ServiceSettings
    from samurai.service.store import Store

__all__ = ["JobParams", "ServiceSettings", "Store", "create_app"]

_HOMES = {
    "create_app": "samurai.service.app",
    "JobParams": "samurai.service.schemas",
    "ServiceSettings": "samurai.service.schemas",
    "Store": "samurai.service.store",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)

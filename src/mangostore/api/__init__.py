"""The local HTTP API of a mangostore database (FastAPI; the ``server`` extra).

``create_app(db, settings)`` makes the ASGI app; ``mangostore serve PATH`` runs it on
loopback or a unix socket. See docs/api.md.
"""

from __future__ import annotations

from mangostore.api.app import create_app
from mangostore.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]

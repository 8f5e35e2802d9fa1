"""``dgprov broker``: mint a user's Defguard enrollment token just in time, for an Entra sign-in.

The client job signs the user in to Entra ID for the broker's scope and posts the access token;
the broker validates it (``tokens``), maps the user to exactly one Defguard member with the
rules of ``generate-tokens`` (``mapping``), applies a per-user rate limit (``limits``) and asks
Defguard for the token. Nothing is stored anywhere, so replicas need no shared state.

This package needs the ``broker`` extra (starlette, uvicorn, prometheus_client). Only
``commands/broker.py`` imports it, and only when the command runs: ``import dgprov``, every other
command and the single-file binary never load a web server.
"""

from __future__ import annotations

from .config import BrokerConfig
from .server import RunningBroker, serve, start_in_thread

__all__ = ["BrokerConfig", "RunningBroker", "serve", "start_in_thread"]

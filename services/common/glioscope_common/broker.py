"""The Celery broker URL, and the embedded broker's faster polling.

The embedded broker is kombu's SQLAlchemy transport on SQLite (`sqla+sqlite:///...`). It polls its
queue table, by default once a second, which adds up to a second before every job starts. kombu's
SQLAlchemy channel hands every `broker_transport_options` key to `create_engine` (a
`polling_interval` option crashes the worker at start), so the interval is set on a transport
subclass instead, registered under its own alias.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SqlAlchemyTransport

__all__ = ["EMBEDDED_POLLING_INTERVAL_S", "EmbeddedTransport", "celery_broker_url"]

EMBEDDED_ALIAS = "glioscope-sqla"
EMBEDDED_POLLING_INTERVAL_S = 0.1


class EmbeddedTransport(SqlAlchemyTransport):
    """kombu's SQLAlchemy transport, polling ten times a second (a few cheap SELECTs on SQLite)."""

    polling_interval = EMBEDDED_POLLING_INTERVAL_S


TRANSPORT_ALIASES[EMBEDDED_ALIAS] = f"{__name__}:EmbeddedTransport"


def celery_broker_url(url: str) -> str:
    """The URL to give Celery: the embedded broker (`sqla+...`) runs on `EmbeddedTransport`; any other
    broker (RabbitMQ) as configured."""
    if url.startswith("sqla+"):
        return f"{EMBEDDED_ALIAS}+{url[len('sqla+'):]}"
    return url

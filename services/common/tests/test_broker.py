"""The embedded broker: kombu's SQLAlchemy transport, polling ten times a second."""

from __future__ import annotations

import time
from pathlib import Path

from kombu import Connection, Exchange, Queue

from glioscope_common.broker import EMBEDDED_POLLING_INTERVAL_S, EmbeddedTransport, celery_broker_url


def test_only_the_embedded_broker_url_is_rewritten() -> None:
    assert celery_broker_url("sqla+sqlite:////tmp/b.db") == "glioscope-sqla+sqlite:////tmp/b.db"
    assert celery_broker_url("amqp://guest:guest@127.0.0.1:5672//") == "amqp://guest:guest@127.0.0.1:5672//"


def test_a_message_goes_through_the_embedded_transport(tmp_path: Path) -> None:
    queue = Queue("cpu", Exchange("cpu"), routing_key="cpu")
    with Connection(celery_broker_url(f"sqla+sqlite:///{tmp_path / 'broker.db'}")) as connection:
        assert isinstance(connection.transport, EmbeddedTransport)
        assert connection.transport.polling_interval == EMBEDDED_POLLING_INTERVAL_S
        received: list[dict] = []
        with connection.Consumer(queue, callbacks=[lambda body, message: (received.append(body), message.ack())]):
            with Connection(celery_broker_url(f"sqla+sqlite:///{tmp_path / 'broker.db'}")) as producer_connection:
                producer_connection.Producer().publish({"job_id": "j1"}, exchange=queue.exchange, routing_key="cpu",
                                                      declare=[queue])
            started = time.perf_counter()
            while not received and time.perf_counter() - started < 5:
                try:
                    connection.drain_events(timeout=1)
                except TimeoutError:
                    pass
        assert received == [{"job_id": "j1"}]

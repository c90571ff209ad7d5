"""The outbound links of one server process: the ingest hook and the ``Deliverer``.

``create_app`` builds one ``Outbound`` from the validated targets file (a bad file stops
the server at start, naming the file and the field); with no file nothing is hooked,
queued or started.
"""

from __future__ import annotations

from server.outbound import channels, evaluations
from server.outbound.alerts import AlertPush
from server.outbound.http_json import HttpSender
from server.outbound.queue import Deliverer, Sender
from server.outbound.targets import OutboundConfig
from server.store.db import Store


def senders() -> dict[str, Sender]:
    """The sender of each target type this server has."""
    return {"http": HttpSender(), **channels.senders()}


class Outbound:
    def __init__(self, store: Store, config: OutboundConfig) -> None:
        self.config = config
        self.forwarding = evaluations.Forwarding(config)
        if self.forwarding.targets:
            store.outbound_hooks = (*store.outbound_hooks, self.forwarding)
        # Alert push (issue 18, item 2): wecom, dingtalk and smtp targets taking alerts.
        self.alerts = AlertPush(config)
        if self.alerts.rules:
            store.outbound_hooks = (*store.outbound_hooks, self.alerts)
        self.deliverer = Deliverer(store.engine, config, senders(), prepare=evaluations.complete)

    def start(self) -> None:
        self.deliverer.start()

    def stop(self) -> None:
        self.deliverer.stop()

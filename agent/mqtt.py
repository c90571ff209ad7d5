"""Shared contract: how every WarmWindow MQTT client is made (terminals, the
aggregator's ingest, bundle pushes): paho 2's callback API and, when configured, TLS that
verifies the broker against our CA and presents the client's own certificate.

The server imports this module (it is part of the shared contract, see
``docs/architecture.md``); it imports nothing of the agent but its configuration.
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt

from agent.config import TlsConfig

__all__ = ["apply_tls", "make_client"]


def apply_tls(client: mqtt.Client, tls: TlsConfig | None) -> None:
    """Verify the broker against our CA and present the client certificate, if configured."""
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_file),
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )


def make_client(
    client_id: str,
    *,
    protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
    tls: TlsConfig | None = None,
    clean_session: bool | None = None,
    manual_ack: bool = False,
    reconnect_on_failure: bool = True,
) -> mqtt.Client:
    """A paho client with the callback API version 2 and our TLS settings."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=clean_session,
        manual_ack=manual_ack,
        reconnect_on_failure=reconnect_on_failure,
    )
    apply_tls(client, tls)
    return client

"""Tests of deploy/: the broker's TLS + ACL, signed bundles, systemd units, provisioning.

``MqttPeer`` is one MQTT v5 (or, for NATS, 3.1.1) client with a certificate (or none) from
the test PKI; it records what the broker answered (CONNACK, SUBACK and PUBACK reason codes)
and what it received, so a test can assert both "refused" and "never delivered".
"""

from __future__ import annotations

import importlib.util
import json
import ssl
import sys
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent.parent
DEPLOY = REPO / "deploy"


def payload() -> str:
    """A body no other message has, to tell what arrived from what did not."""
    return json.dumps({"probe": uuid.uuid4().hex})


def load_script(path: Path) -> ModuleType:
    """Import a deploy/ script (they are plain files, not a package) as a module."""
    name = f"_ww_deploy_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class MqttPeer:
    """A TLS MQTT v5 client for tests; ``connected`` is None until the broker answers."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ca: Path | None,
        cert_dir: Path | None,
        client_id: str | None = None,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5,
        clean_session: bool | None = None,
    ) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=clean_session if protocol != mqtt.MQTTv5 else None,
        )
        if ca is not None:  # None: plain MQTT, for the demo-style broker
            self.client.tls_set(
                ca_certs=str(ca),
                certfile=str(cert_dir / "window.crt") if cert_dir else None,
                keyfile=str(cert_dir / "window.key") if cert_dir else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._lock = threading.Lock()
        self.connected: bool | None = None
        self.connack: ReasonCode | None = None
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.pubacks: dict[int, ReasonCode] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.error: Exception | None = None
        try:
            self.client.connect(host, port, keepalive=10)
        except (OSError, ssl.SSLError) as exc:  # handshake refused before MQTT
            self.error = exc
            self.connected = False
            return
        self.client.loop_start()

    # paho callbacks (network thread)
    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self.connected = not rc.is_failure

    def _on_disconnect(self, *_a: Any) -> None:
        if self.connected is None:
            self.connected = False

    def _on_subscribe(
        self, _c: mqtt.Client, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any
    ) -> None:
        with self._lock:
            self.subacks[mid] = list(rcs)

    def _on_publish(
        self, _c: mqtt.Client, _u: Any, mid: int, rc: ReasonCode, _p: Properties | None
    ) -> None:
        with self._lock:
            self.pubacks[mid] = rc

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    # test API
    def wait_connack(self, timeout: float = 5.0) -> bool:
        """True when the broker accepted us; False when refused or silent."""
        wait_until(lambda: self.connected is not None, timeout)
        return bool(self.connected)

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[ReasonCode]:
        rc, mid = self.client.subscribe(topic_filter, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, mqtt.error_string(rc)
        assert wait_until(lambda: mid in self.subacks), f"no SUBACK for {topic_filter}"
        return self.subacks[mid]

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, *, retain: bool = False
    ) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert wait_until(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def received(self, topic: str | None = None) -> list[tuple[str, bytes]]:
        with self._lock:
            return [m for m in self.messages if topic is None or m[0] == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

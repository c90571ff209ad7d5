"""ServerEnv: WW_* variables -> ServerSettings/IngestSettings; secrets only from files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from server.ingest import IngestSettings
from server.settings import ServerEnv


def test_environment_builds_server_and_ingest_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pw = tmp_path / "db-password"
    pw.write_text("p@ss/word\n")
    for k, v in {
        "WW_DB_URL": "postgresql+psycopg://warmwindow@db:5432/warmwindow",
        "WW_DB_PASSWORD_FILE": str(pw),
        "WW_SITES": "/etc/warmwindow/sites/qingpu:/etc/warmwindow/sites/zhujiajiao",
        "WW_MQTT_HOST": "mqtt",
        "WW_MQTT_PORT": "8883",
        "WW_MQTT_SHARE_GROUP": "ww-ingest",
        "WW_MQTT_CLIENT_ID": "ww-server-2",
        "WW_MQTT_CA_FILE": "/run/secrets/ca.crt",
        "WW_MQTT_CERT_FILE": "/run/secrets/server.crt",
        "WW_MQTT_KEY_FILE": "/run/secrets/server.key",
        "WW_SECURE_COOKIES": "true",
    }.items():
        monkeypatch.setenv(k, v)
    env = ServerEnv()
    if "tls" not in {f.name for f in dataclasses.fields(IngestSettings)}:
        # Before the ingest's TLS change: a TLS setting must not be silently dropped.
        with pytest.raises(NotImplementedError):
            env.server_settings()
        monkeypatch.delenv("WW_MQTT_CA_FILE")
        monkeypatch.delenv("WW_MQTT_CERT_FILE")
        monkeypatch.delenv("WW_MQTT_KEY_FILE")
        plain = ServerEnv()
        assert plain.mqtt_tls() is None
        s = plain.server_settings()
    else:
        s = env.server_settings()
        assert getattr(s.mqtt, "tls", None) == env.mqtt_tls()
    assert s.db_url == "postgresql+psycopg://warmwindow:p%40ss%2Fword@db:5432/warmwindow"
    assert [p.name for p in s.sites] == ["qingpu", "zhujiajiao"]
    assert s.secure_cookies is True
    assert s.mqtt is not None
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.share_group, s.mqtt.client_id) == (
        "mqtt",
        8883,
        "ww-ingest",
        "ww-server-2",
    )
    tls = env.mqtt_tls()
    assert tls is not None and tls.key_file == Path("/run/secrets/server.key")
    assert "p@ss" not in repr(env)  # the password is read only when the URL is built


def test_password_in_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WW_DB_URL", "postgresql+psycopg://ww:secret@db/ww")
    with pytest.raises(ValidationError, match="must not contain a password"):
        ServerEnv()


def test_defaults_are_local_and_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("WW_DB_URL", "WW_MQTT_CA_FILE", "WW_SITES"):
        monkeypatch.delenv(k, raising=False)
    env = ServerEnv()
    assert env.mqtt_tls() is None and env.site_dirs() == []
    assert env.server_settings().db_url.startswith("sqlite:///")


def test_metrics_token_comes_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.api.deps import ServerSettings

    token = tmp_path / "metrics-token"
    token.write_text("t0ken\n")
    monkeypatch.setenv("WW_METRICS_TOKEN_FILE", str(token))
    monkeypatch.delenv("WW_MQTT_CA_FILE", raising=False)
    env = ServerEnv()
    assert env.metrics_token() == "t0ken"
    if "metrics_token" in {f.name for f in dataclasses.fields(ServerSettings)}:
        assert getattr(env.server_settings(), "metrics_token", None) == "t0ken"
    else:  # before the deps.py change: refuse rather than serve /metrics unprotected
        with pytest.raises(NotImplementedError, match="WW_METRICS_TOKEN_FILE"):
            env.server_settings()


def test_events_from_a_nats_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "WW_EVENTS_FROM": "jetstream",
        "WW_NATS_URLS": "nats://n1:4222, nats://n2:4222,nats://n3:4222",
        "WW_MQTT_HOST": "n1",
        "WW_MQTT_NODES": "n2:8883,n3:8883",
        "WW_MQTT_PROTOCOL": "3.1.1",
        "WW_MQTT_CA_FILE": "/etc/ww/ca.crt",
        "WW_MQTT_CERT_FILE": "/etc/ww/server.crt",
        "WW_MQTT_KEY_FILE": "/etc/ww/server.key",
    }.items():
        monkeypatch.setenv(k, v)
    ingest = ServerEnv().ingest_settings()
    assert ingest.nodes == (("n2", 8883), ("n3", 8883))
    assert ingest.protocol == mqtt.MQTTv311
    assert ingest.events is not None
    assert ingest.events.urls == ["nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]
    assert (ingest.events.stream, ingest.events.durable, ingest.events.replicas) == (
        "WW_EVENTS",
        "ww-ingest",
        3,
    )
    assert str(ingest.events.cert_file) == "/etc/ww/server.crt"  # the server identity
    monkeypatch.setenv("WW_MQTT_NODES", "n2")
    with pytest.raises(ValidationError, match="WW_MQTT_NODES: 'n2' is not host:port"):
        ServerEnv()


def test_events_from_mqtt_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServerEnv().ingest_settings().events is None

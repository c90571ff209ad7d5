"""The aggregator's configuration from the environment (12-factor; systemd and compose).

``ServerEnv`` reads ``WW_*`` variables (and an optional env file) and builds the
dataclasses the code already uses: ``ServerSettings`` for ``create_app`` and
``IngestSettings`` for the MQTT consumer. Nothing is read at import.

Secrets never sit in the environment itself: a variable ending in ``_FILE`` names a file
holding the secret (a systemd credential under ``$CREDENTIALS_DIRECTORY``, or a compose
secret under ``/run/secrets``), so ``ps``, ``/proc/<pid>/environ`` dumps and the env file
in version control stay clean.

=========================  ==================================================  ====================
Variable                   Meaning                                             Default
=========================  ==================================================  ====================
WW_DB_URL                  SQLAlchemy URL, without the password                sqlite:///var/warmwindow.db
WW_DB_PASSWORD_FILE        file holding the database password (inserted)       (none)
WW_SITES                   site directories, separated by ':'                  (none)
WW_TIMEZONE                IANA zone of the centres                            Asia/Shanghai
WW_HTTP_HOST / _PORT       where the API and page listen                       127.0.0.1 / 8080
WW_SECURE_COOKIES          true behind HTTPS                                   false
WW_MQTT_HOST / _PORT       broker                                              127.0.0.1 / 8883
WW_MQTT_CLIENT_ID          stable per replica                                  ww-server-1
WW_MQTT_SHARE_GROUP        shared subscription group for several replicas      (none)
WW_MQTT_CA_FILE            CA of the broker certificate; enables TLS           (none)
WW_MQTT_CERT_FILE / _KEY_FILE  the server identity's client certificate/key   (none)
WW_MQTT_NODES              further broker nodes of a cluster, host:port,...    (none)
WW_MQTT_PROTOCOL           5 (falls back to 3.1.1 when refused) or 3.1.1       5
WW_EVENTS_FROM             mqtt (the subscription) or jetstream (a NATS        mqtt
                           cluster's replicated stream, docs/cluster.md)
WW_NATS_URLS               the cluster's nodes, nats://host:port,...           nats://127.0.0.1:4222
WW_NATS_STREAM / _DURABLE  the events stream and the replicas' consumer       WW_EVENTS / ww-ingest
WW_NATS_REPLICAS           copies of the stream when the ingest creates it    3
                           (TLS for NATS: the WW_MQTT_CA/CERT/KEY files)
WW_METRICS_TOKEN_FILE      bearer token /metrics requires, if set              (none)
WW_RAW_EVENTS_DAYS         retention of raw events                             400
WW_MEASURES_DAYS           retention of measures                               1098
WW_CALENDAR_FILE           working-day overrides (years the library lacks)     the bundled file
WW_NOT_OBSERVED_SHARE      a window's share of sessions not observed that      0.3
                           raises a camera alert (over the look-back)
WW_NOT_OBSERVED_MIN_SESSIONS  the fewest sessions that alert is judged on      10
WW_NOT_OBSERVED_HOURS      its look-back                                       24
WW_OUTBOUND_FILE           outbound targets (docs/outbound.md); none = off     (none)
WW_BUNDLE_SIGNING_KEY_FILE Ed25519 key signing settings bundles pushed to      (none: no pushes)
                           terminals (``warmwindow bundle keygen``)
=========================  ==================================================  ====================
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Self

import paho.mqtt.client as mqtt
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from agent.config import TlsConfig
from server.api.deps import ServerSettings
from server.events_source import JetStreamSettings
from server.ingest import IngestSettings
from server.policy.clock import NotObservedLimits


def _secret(path: Path | None) -> str | None:
    # Files written by editors end with a newline that is not part of the secret.
    return path.read_text(encoding="utf-8").strip() if path is not None else None


class ServerEnv(BaseSettings):
    """Aggregator settings from ``WW_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="WW_", extra="ignore", frozen=True)

    db_url: str = Field("sqlite:///var/warmwindow.db", description="SQLAlchemy URL, no password.")
    db_password_file: Path | None = Field(None, description="File with the DB password.")
    sites: str = Field("", description="Site directories to register, ':'-separated.")
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of the centres.")
    http_host: str = Field("127.0.0.1", description="HTTP bind address.")
    http_port: int = Field(8080, ge=1, le=65535, description="HTTP port.")
    secure_cookies: bool = Field(False, description="Mark cookies Secure (behind HTTPS).")
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host.")
    mqtt_port: int = Field(8883, ge=1, le=65535, description="MQTT broker port.")
    mqtt_client_id: str = Field("ww-server-1", description="Stable client id per replica.")
    mqtt_share_group: str | None = Field(None, description="Shared subscription group.")
    mqtt_ca_file: Path | None = Field(None, description="Broker CA; setting it enables TLS.")
    mqtt_cert_file: Path | None = Field(None, description="Server identity certificate.")
    mqtt_key_file: Path | None = Field(None, description="Server identity private key.")
    mqtt_nodes: str = Field(
        "", description="Further broker nodes (host:port, comma-separated) to fail over to."
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT version (5 falls back to 3.1.1 when the broker refuses it)."
    )
    events_from: Literal["mqtt", "jetstream"] = Field(
        "mqtt", description="Where events come from: the MQTT subscription or a JetStream stream."
    )
    nats_urls: str = Field(
        "nats://127.0.0.1:4222", description="NATS cluster nodes, comma-separated URLs."
    )
    nats_stream: str = Field("WW_EVENTS", description="JetStream stream of the events.")
    nats_durable: str = Field("ww-ingest", description="Durable consumer the replicas share.")
    nats_replicas: int = Field(3, ge=1, le=5, description="Replicas of a stream it creates.")
    metrics_token_file: Path | None = Field(None, description="Bearer token for /metrics.")
    raw_events_days: int = Field(400, ge=1, description="Retention of raw events, days.")
    measures_days: int = Field(3 * 366, ge=1, description="Retention of measures, days.")
    calendar_file: Path | None = Field(
        None, description="Official working-day overrides (default: the bundled file)."
    )

    outbound_file: Path | None = Field(
        None, description="Outbound targets file (docs/outbound.md); none: all outbound off."
    )

    bundle_signing_key_file: Path | None = Field(
        None, description="Ed25519 key (PEM) that signs settings bundles for terminals."
    )

    not_observed_share: float = Field(
        0.30,
        gt=0,
        le=1,
        description="Share of a window's sessions with a verdict not observed that raises "
        "a camera placement or lighting alert.",
    )
    not_observed_min_sessions: int = Field(
        10, ge=1, description="Fewest sessions in the look-back that alert is judged on."
    )
    not_observed_hours: float = Field(
        24, gt=0, le=24 * 31, description="The look-back of that alert, hours."
    )

    @model_validator(mode="after")
    def _no_password_in_url(self) -> Self:
        if make_url(self.db_url).password:
            raise ValueError(
                "WW_DB_URL must not contain a password; put it in the file WW_DB_PASSWORD_FILE"
            )
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("WW_MQTT_CERT_FILE and WW_MQTT_KEY_FILE go together")
        if self.mqtt_cert_file is not None and self.mqtt_ca_file is None:
            raise ValueError("WW_MQTT_CERT_FILE needs WW_MQTT_CA_FILE (TLS)")
        self.broker_nodes()  # a bad entry fails at start, naming the variable
        return self

    def broker_nodes(self) -> tuple[tuple[str, int], ...]:
        out = []
        for item in (p.strip() for p in self.mqtt_nodes.split(",")):
            if not item:
                continue
            host, sep, port = item.rpartition(":")
            if not (sep and host and port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"WW_MQTT_NODES: {item!r} is not host:port")
            out.append((host, int(port)))
        return tuple(out)

    def jetstream(self) -> JetStreamSettings | None:
        if self.events_from != "jetstream":
            return None
        urls = [u.strip() for u in self.nats_urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("WW_NATS_URLS: no URL given for WW_EVENTS_FROM=jetstream")
        return JetStreamSettings(
            urls=urls,
            stream=self.nats_stream,
            durable=self.nats_durable,
            replicas=self.nats_replicas,
            name=self.mqtt_client_id,
            ca_file=self.mqtt_ca_file,
            cert_file=self.mqtt_cert_file,
            key_file=self.mqtt_key_file,
        )

    def database_url(self) -> str:
        """``db_url`` with the password from ``db_password_file`` (never logged)."""
        url = make_url(self.db_url)
        password = _secret(self.db_password_file)
        if password:
            url = url.set(password=password)
        return url.render_as_string(hide_password=False)

    def site_dirs(self) -> list[Path]:
        return [Path(p) for p in self.sites.split(":") if p.strip()]

    def mqtt_tls(self) -> TlsConfig | None:
        if self.mqtt_ca_file is None:
            return None
        return TlsConfig(
            ca_file=self.mqtt_ca_file, cert_file=self.mqtt_cert_file, key_file=self.mqtt_key_file
        )

    def metrics_token(self) -> str | None:
        return _secret(self.metrics_token_file)

    def ingest_settings(self) -> IngestSettings:
        kwargs: dict[str, Any] = {
            "host": self.mqtt_host,
            "port": self.mqtt_port,
            "client_id": self.mqtt_client_id,
            "share_group": self.mqtt_share_group,
            "nodes": self.broker_nodes(),
            "events": self.jetstream(),
            "protocol": mqtt.MQTTv5 if self.mqtt_protocol == "5" else mqtt.MQTTv311,
        }
        _security_option(IngestSettings, kwargs, "tls", self.mqtt_tls(), "WW_MQTT_CA_FILE")
        return IngestSettings(**kwargs)

    def server_settings(self) -> ServerSettings:
        kwargs: dict[str, Any] = {
            "db_url": self.database_url(),
            "sites": self.site_dirs(),
            "mqtt": self.ingest_settings(),
            "timezone": self.timezone,
            "secure_cookies": self.secure_cookies,
            "not_observed": NotObservedLimits(
                share=self.not_observed_share,
                min_sessions=self.not_observed_min_sessions,
                lookback_ms=int(self.not_observed_hours * 3_600_000),
            ),
            "outbound_file": self.outbound_file,
            "bundle_signing_key": self.bundle_signing_key_file,
        }
        token = self.metrics_token()
        _security_option(ServerSettings, kwargs, "metrics_token", token, "WW_METRICS_TOKEN_FILE")
        return ServerSettings(**kwargs)


def _security_option(
    cls: type[Any], kwargs: dict[str, Any], name: str, value: object, variable: str
) -> None:
    """Add ``name=value`` to ``kwargs`` when set. ``IngestSettings.tls`` and
    ``ServerSettings.metrics_token`` arrive with the issue 7 changes to server/ingest.py and
    server/api/deps.py; until then a security setting must fail loudly, never be dropped."""
    if value is None:
        return
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise NotImplementedError(f"{variable} is set but {cls.__name__} has no {name!r} yet")
    kwargs[name] = value

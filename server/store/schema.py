"""Tables of the aggregator's store (SQLAlchemy Core; SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

units = Table(
    "units",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("district", Text, nullable=False),
    Column("unit_kind", String(32), nullable=False),
    Column("timezone", String(64), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("site", String(32), primary_key=True),
    Column("window", String(32), primary_key=True),
    Column("label", Text, nullable=False),
    Column("role", String(32), nullable=False),
    Column("online", Boolean, nullable=False, default=False),
    Column("availability_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),
    Column("state", JSON, nullable=True),
    Column("max_seq", BigInteger, nullable=False, default=0),
    Column("boot_id", String(36), nullable=True),
)

events = Table(
    "events",
    metadata,
    # The device's UUID makes every replay or duplicate collide here, across replicas too.
    Column("event_id", String(36), primary_key=True),
    Column("site", String(32), nullable=False),
    Column("window", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("boot_id", String(36), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("session_id", String(36), nullable=True),
    Column("historical", Boolean, nullable=False, default=False),
    Column("payload", JSON, nullable=False),
    Index("ix_events_device_ts", "site", "window", "ts_ms"),
    Index("ix_events_received", "received_ms"),
)

rejects = Table(
    "rejects",
    metadata,
    Column("reason", String(32), primary_key=True),
    Column("count", Integer, nullable=False, default=0),
)

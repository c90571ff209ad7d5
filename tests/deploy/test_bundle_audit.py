"""``warmwindow bundle push`` puts every push on the aggregator's audit record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.cli import main
from agent.localbroker import MosquittoBroker
from server.accounts import Accounts
from server.store.db import Store


def test_each_push_is_audited_with_the_bundle_hash(broker: MosquittoBroker, tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"not inspected by the push itself")
    db = f"sqlite:///{tmp_path / 'ww.db'}"
    args = ["bundle", "push", str(bundle), "--site", "qingpu", "--window", "w03"]
    args += ["--window", "w04", "--host", broker.host, "--port", str(broker.port), "--db", db]
    assert main(args) == 0
    store = Store(db)
    try:
        entries = Accounts(store.engine).audit_entries()
    finally:
        store.close()
    pushes = [e for e in entries if e["action"] == "bundle_push"]
    assert sorted(e["target"] for e in pushes) == ["qingpu/w03", "qingpu/w04"]
    assert all(e["site"] == "qingpu" and e["username"].startswith("cli:") for e in pushes)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert [e["detail"]["sha256"] for e in pushes] == [digest, digest]


def test_a_failed_push_is_audited_too(tmp_path: Path) -> None:
    bundle = tmp_path / "b.zip"
    bundle.write_bytes(b"x")
    db = f"sqlite:///{tmp_path / 'ww.db'}"
    args = ["bundle", "push", str(bundle), "--site", "qingpu", "--window", "w03"]
    args += ["--host", "127.0.0.1", "--port", "9", "--db", db]  # nothing listens on port 9
    with pytest.raises(OSError):
        main(args)
    store = Store(db)
    try:
        entries = Accounts(store.engine).audit_entries()
    finally:
        store.close()
    assert [e["action"] for e in entries] == ["bundle_push_failed"]

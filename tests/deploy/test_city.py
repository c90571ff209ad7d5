"""deploy/city: the compose file parses and wires three replicas into one share group on
three EMQX nodes; emqx.conf keeps the security settings; the EMQX ACL is generated from
the site files with the same rules as Mosquitto's."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from agent.protocol import ACCEPTS_SUBSCRIPTION, accepts_topic
from server.settings import ServerEnv
from tests.conftest import EXAMPLE_SITE
from tests.deploy import DEPLOY

CITY = DEPLOY / "city"


def compose() -> dict[str, Any]:
    doc = yaml.safe_load((CITY / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_three_nodes_three_replicas_one_database() -> None:
    services = compose()["services"]
    nodes = {n: s for n, s in services.items() if s.get("image", "").startswith("emqx/emqx:5")}
    replicas = {n: s for n, s in services.items() if n.startswith("server")}
    assert len(nodes) == 3 and len(replicas) == 3
    assert [s["image"] for s in services.values() if "postgres" in s.get("image", "")] == [
        "postgres:16"
    ]
    names = {s["environment"]["EMQX_NODE__NAME"] for s in nodes.values()}
    seeds = re.search(r"seeds = \[(.*)\]", (CITY / "emqx.conf").read_text())
    assert seeds and names == set(re.findall(r'"([^"]+)"', seeds.group(1)))
    known = {f"WW_{k.upper()}" for k in ServerEnv.model_fields}
    ids, hosts = set(), set()
    for name, s in replicas.items():
        env = s["environment"]
        assert set(env) <= known, f"{name}: {set(env) - known}"
        assert env["WW_MQTT_SHARE_GROUP"] == "ww-ingest"
        assert "@" in env["WW_DB_URL"] and ":" not in env["WW_DB_URL"].split("//")[1].split("@")[0]
        ids.add(env["WW_MQTT_CLIENT_ID"])
        hosts.add(env["WW_MQTT_HOST"])
    assert len(ids) == 3, "each replica needs its own persistent session"
    assert hosts == {n.split("@")[1] for n in names}
    for vol in nodes["emqx1"]["volumes"]:
        src = (CITY / vol.split(":")[0]).resolve()
        rel = src.relative_to(CITY.resolve()).as_posix()
        assert (
            src.exists()
            or rel in (CITY / ".gitignore").read_text().split()
            or (rel + "/" in (CITY / ".gitignore").read_text().split())
        ), f"{rel} neither present nor an ignored install-time file"


def test_emqx_conf_requires_client_certificates_and_denies_by_default() -> None:
    conf = (CITY / "emqx.conf").read_text()
    for setting in (
        "verify = verify_peer",
        "fail_if_no_peer_cert = true",
        "peer_cert_as_username = cn",
        "no_match = deny",
        "shared_subscription_strategy = hash_topic",
        "listeners.tcp.default { enable = false }",
    ):
        assert setting in conf, setting
    assert conf.count("{") == conf.count("}"), "unbalanced HOCON braces"


def test_emqx_acl_generated_from_sites() -> None:
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "mosquitto" / "acl.py"), "--format", "emqx", EXAMPLE_SITE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rules = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rules[-1] == "{deny, all}."
    w03 = [r for r in rules if '"qingpu/w03"' in r]
    assert len(w03) == 2
    pub = next(r for r in w03 if "publish" in r)
    assert set(re.findall(r'"(ww/[^"]+)"', pub)) == {
        f"ww/v1/qingpu/w03/{ch}" for ch in ("availability", "event", "state", "health", "reply")
    }
    sub = next(r for r in w03 if "subscribe" in r)
    assert set(re.findall(r'"(ww/[^"]+)"', sub)) == {
        "ww/v1/qingpu/w03/config",
        "ww/v1/qingpu/w03/settings",
        "ww/v1/qingpu/w03/cmd",
        "ww/v1/qingpu/w03/stored",
        ACCEPTS_SUBSCRIPTION,
    }
    assert all(r.endswith(".") for r in rules)


def grants(rules: list[str]) -> list[tuple[str, str, list[str]]]:
    """(username, action, topic filters) of every allow rule of an EMQX acl.conf."""
    out = []
    for rule in rules:
        m = re.fullmatch(r'\{allow, \{username, "([^"]+)"\}, (\w+), \[(.*)\]\}\.', rule)
        if m:
            out.append((m.group(1), m.group(2), re.findall(r'"([^"]+)"', m.group(3))))
    return out


def test_emqx_acl_windows_read_but_never_write_the_accepts_announcements() -> None:
    """A forged announcement would move the fleet's event version, so only ww-server
    may publish on ww/v1/_server/accepts/<id>; every window may subscribe to them."""
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "mosquitto" / "acl.py"), "--format", "emqx", EXAMPLE_SITE],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rules = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    allowed = grants(rules)
    assert len(allowed) == len(rules) - 1, "every rule but the last is a parsed allow rule"
    announcement = accepts_topic("ww-server")
    windows = {user for user, _, _ in allowed if user != "ww-server"}
    assert windows, "no window in the example site"
    for user in windows:
        actions = {action for u, action, _ in allowed if u == user}
        assert actions == {"publish", "subscribe"}, f"{user}: {actions}"
        subs = [f for u, action, fs in allowed if u == user and action == "subscribe" for f in fs]
        assert ACCEPTS_SUBSCRIPTION in subs, f"{user} cannot read the announcements"
        pubs = [f for u, action, fs in allowed if u == user and action == "publish" for f in fs]
        for forged in (announcement, accepts_topic(user.replace("/", "-"))):
            assert not any(mqtt.topic_matches_sub(f, forged) for f in pubs), (user, forged)
    server_pubs = [
        f for u, action, fs in allowed if u == "ww-server" and action == "publish" for f in fs
    ]
    assert any(mqtt.topic_matches_sub(f, announcement) for f in server_pubs)

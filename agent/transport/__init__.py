"""MQTT transport of a window terminal: one paho client, owned by one thread.

It owns the connection to the centre's broker and nothing else: the outbox owns the
events, the app owns the state and health it asks us to publish. What it guarantees:

* **No event is lost.** Events are published from the ``Outbox`` in ``seq`` order, QoS 1,
  with a bounded in-flight window, and a row is deleted only when its PUBACK arrives
  (``on_publish`` with that ``mid`` and a success reason code). Every ``publish`` return
  code is checked: ``MQTT_ERR_QUEUE_SIZE`` (paho 2.2 refuses a QoS 1 publish when its
  queue is full or a mid would collide) leaves the row in the outbox and pauses the
  drain until a PUBACK frees room; ``MQTT_ERR_NO_CONN`` means paho has kept the message
  for the next connection. A PUBACK with an MQTT 5 error code (ACL, quota) keeps the
  row, and after a pause the drain starts again from the oldest row on a fresh client,
  so order is kept. A PUBACK 0x10 "no matching subscribers" keeps the row too; it is
  resent on the same connection after a growing pause.
* **Or only once it is stored** (``BrokerConfig.confirm = "stored"``). A broker's PUBACK
  says the broker has the event, not the store: a clustered engine may PUBACK before it
  has replicated it. In this mode a PUBACK only hands the row off (the cursor moves
  on); the row is deleted when the aggregator's ``protocol.Stored`` on the window's own
  ``stored`` topic (QoS 0, subscribed on every connect) covers its seq, whether its
  PUBACK came yet or not. A row handed off and unconfirmed for ``confirm_timeout_s`` goes
  again (``historical=true``, same ``event_id``), each further resend of it waiting twice
  as long, at most 15 minutes; an agent restart sends every row again, as ever. An
  invalid ``Stored``, or one naming another window, is counted (``bad_stored``) and
  ignored. ``"puback"`` (the default) is the behaviour above, unchanged.
* **Replays say so.** Rows older than the current connection (queued while offline, or
  by an earlier run of the agent) go out with ``historical=true``, same ``event_id``.
  "Older" is decided by sequence number, not by clock: a Pi has no RTC and its clock
  jumps at the first NTP sync after boot.
* **The centre sees the terminal's presence.** Last will ``offline`` (retained, QoS 1)
  is set before connecting; birth ``online`` (retained) is published on every connect;
  ``close()`` publishes ``offline`` itself, since a graceful DISCONNECT discards the will.
* **Sessions survive.** Fixed client id ``ww-<site>-<window>``; MQTT 5 with
  ``clean_start=False`` and a session expiry interval (without one an MQTT 5 session ends
  at the disconnect), falling back to MQTT 3.1.1 with ``clean_session=False`` when the
  broker answers "unsupported protocol version" or leaves two v5 CONNECTs unanswered
  (amqtt does either, old brokers close the socket). ``config`` and ``cmd`` (and
  ``stored`` when confirming) are subscribed in ``on_connect`` so every reconnect
  restores them.
* **A cluster is one broker.** With ``BrokerConfig.nodes`` (``host:port`` each) the
  first attempt goes to the node a stable hash (crc32) of the client id picks, so a
  city's terminals spread over the nodes; a failed attempt, an unanswered or refused
  CONNECT, or a dropped connection moves the next attempt (after the backoff below) to
  the next node. Same client id and ``clean_start=False`` there: a cluster shares the
  session. ``TransportStats.node`` says where it is (not in ``Health``, whose closed
  model would make that a contract change).
* **Reconnects are polite.** Capped exponential backoff with equal jitter, so a centre's
  terminals do not reconnect in lock-step after a broker restart; the backoff is reset
  only after a connection has stayed up for a while, so two terminals misconfigured with
  the same client id cannot kick each other in a tight loop. With
  ``BrokerConfig.reconnect_spread_s`` the first reconnect after a drop also waits a
  random part of that spread: a broker restarted in front of 10,000 terminals otherwise
  gets them all within the first backoff step (the city run).
* **It sends what the servers accept.** It reads every ingest's retained announcement
  (``ww/v1/_server/accepts/+``) and sends each event at the highest schema version that
  it and every announcing ingest know, dropping the fields an older version lacks; the
  base version until an announcement arrives (``Transport.send_version``).
* **Commands never crash it.** ``cmd`` payloads are validated as ``protocol.Command``;
  an invalid one, or one whose handler raises, is answered on ``reply`` with ``ok=false``.

Threading: only the owner thread (``start()``) touches the paho client; it runs paho's
``loop()`` itself rather than ``loop_start()`` because paho's own thread would reconnect
on its own schedule, without jitter. Other threads hand work over through
``publish_state``/``publish_health`` (latest value wins) and read ``link``/``stats()``.
Command and config handlers run on the owner thread and must not block.

The package, one concern a module; only ``link`` imports paho, and the pure parts
take codes and times (monotonic seconds) as arguments, so their tests need no broker:

* ``backoff``: ``backoff_delay``, ``first_retry_delay`` and ``Reconnect``, which step
  of the backoff the next attempt waits;
* ``fallback``: ``ProtocolFallback``, when to stop offering MQTT 5;
* ``window``: ``DeliveryWindow``, the cursor into the outbox, ``mid -> seq``, the
  in-flight limit, batched deletes and the restart on a new client;
* ``puback``: ``classify`` and ``PubackPolicy``, what a PUBACK code means for its row;
* ``nodes``: ``NodeRing``, which broker node the next attempt goes to;
* ``confirm``: ``Confirmations``, the handed-off rows awaiting their ``Stored``, which are
  due to go again, and what a ``Stored`` releases;
* ``commands``: ``answer``, the reply to any ``cmd`` payload;
* ``link``: ``PahoLink``, the paho client, its callbacks turned into plain calls;
* ``facade``: ``Transport``, the owner thread that wires them, and ``Tuning``, its
  timeouts (today's values by default; tests pass short ones).

A broker that speaks only 3.1.1 (NATS's MQTT listener) is reached through
``ProtocolFallback``; its PUBACKs carry no code (``classify`` sees 0), and the stricter
delivery check for it is the ``stored`` confirmation above, which works on any broker.
"""

from agent.transport.backoff import Reconnect, backoff_delay, first_retry_delay
from agent.transport.commands import CommandHandler
from agent.transport.confirm import Confirmations
from agent.transport.facade import (
    ConfigHandler,
    LinkState,
    Transport,
    TransportStats,
    Tuning,
)
from agent.transport.fallback import ProtocolChoice, ProtocolFallback
from agent.transport.link import PahoLink
from agent.transport.nodes import NodeRing
from agent.transport.puback import NO_MATCHING_SUBSCRIBERS, Puback, PubackPolicy, classify
from agent.transport.window import DeliveryWindow

__all__ = [
    "NO_MATCHING_SUBSCRIBERS",
    "CommandHandler",
    "ConfigHandler",
    "Confirmations",
    "DeliveryWindow",
    "LinkState",
    "NodeRing",
    "PahoLink",
    "ProtocolChoice",
    "ProtocolFallback",
    "Puback",
    "PubackPolicy",
    "Reconnect",
    "Transport",
    "TransportStats",
    "Tuning",
    "backoff_delay",
    "classify",
    "first_retry_delay",
]

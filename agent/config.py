"""Device configuration: the site file and per-window files under firmware_config/.

A site directory holds ``site.toml`` and ``windows/*.toml``. ``load_site`` validates
all of them and raises one ``ConfigError`` listing every problem as
``file: field: reason`` so an installer can fix a whole site in one pass.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.protocol import Slug

#: BCM GPIO numbers usable on the Pi 40-pin header (GPIO 0/1 are the HAT EEPROM bus).
BcmPin = Annotated[int, Field(ge=2, le=27)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(ConfigModel):
    ca_file: Path = Field(description="CA certificate that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="This terminal's client certificate.")
    key_file: Path | None = Field(None, description="Private key of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


def parse_node(text: str) -> tuple[str, int]:
    """``"host:port"`` (an IPv6 host in brackets: ``"[::1]:1883"``) as ``(host, port)``;
    ValueError saying what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"{text!r} is not host:port")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return host, int(port)


class BrokerConfig(ConfigModel):
    host: str = Field("127.0.0.1", description="MQTT broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    keepalive_s: int = Field(30, ge=5, le=600, description="MQTT keepalive.")
    reconnect_spread_s: float = Field(
        0.0,
        ge=0.0,
        le=600.0,
        description=(
            "After an established connection drops, wait a random 0..this many seconds "
            "before the first reconnect, so a restarted broker serving a whole fleet sees "
            "its reconnects spread out (about windows / 100 for a city cluster; 0 in a hall)."
        ),
    )
    username: str | None = Field(None, description="Username, when the broker asks for one.")
    password_file: Path | None = Field(
        None, description="File holding the password (secrets stay out of config)."
    )
    tls: TlsConfig | None = Field(None, description="TLS settings; None = plain TCP.")
    nodes: list[str] = Field(
        [],
        max_length=16,
        description=(
            "Broker cluster nodes as 'host:port', to fail over between; empty: host and "
            "port alone. The terminal starts at a node chosen by its client id (so a "
            "city's terminals spread over the nodes) and moves to the next when a "
            "connection fails or drops, keeping its session (same client id)."
        ),
    )
    connack_timeout_s: float | None = Field(
        None,
        ge=1.0,
        le=300.0,
        description=(
            "How long to wait for the broker's CONNACK before trying again (the next "
            "node, with nodes). Unset: 5 s for one broker, 30 s with nodes: a loaded "
            "cluster node takes seconds to load a session, and a terminal that gives up "
            "sooner starts the session's takeover again on another node "
            "(docs/city-run.md: 1,000 windows on 3 NATS nodes drained with 30 s, not 5 s)."
        ),
    )
    confirm: Literal["puback", "stored"] = Field(
        "puback",
        description=(
            "When an event leaves the outbox. 'puback': at the broker's PUBACK. 'stored': "
            "only when the aggregator confirms it stored it (ww/v1/<site>/<window>/stored), "
            "closing the window where a broker PUBACKs an event it has not yet replicated "
            "(a clustered engine); needs an aggregator that publishes the confirmations."
        ),
    )
    confirm_timeout_s: float = Field(
        30.0,
        ge=1.0,
        le=3600.0,
        description=(
            "With confirm = 'stored': an event handed to the broker and not confirmed "
            "within this many seconds is sent again (same event_id), each further resend "
            "of it waiting twice as long, at most 15 minutes."
        ),
    )

    @field_validator("nodes")
    @classmethod
    def _nodes_are_host_port(cls, nodes: list[str]) -> list[str]:
        for node in nodes:
            try:
                parse_node(node)
            except ValueError as exc:
                raise ValueError(f"broker.nodes: {exc}") from None
        return nodes

    def addresses(self) -> list[tuple[str, int]]:
        """The nodes to connect to, as (host, port): ``nodes``, or host and port."""
        return [parse_node(n) for n in self.nodes] or [(self.host, self.port)]


class OpeningHours(ConfigModel):
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        [1, 2, 3, 4, 5], description="ISO weekdays the centre is open (1 = Monday)."
    )
    open: time = Field(time(9, 0), description="Local opening time.")
    close: time = Field(time(17, 0), description="Local closing time.")

    @model_validator(mode="after")
    def _open_before_close(self) -> Self:
        if self.open >= self.close:
            raise ValueError("open must be before close")
        return self


class SiteConfig(ConfigModel):
    site: Slug = Field(description="Site slug used in MQTT topics.")
    name: str = Field(description="Display name of the service centre.")
    district: str = Field(description="District the centre belongs to.")
    unit_kind: Literal["district_centre", "branch_centre", "community_centre"] = Field(
        description="Level of the unit in the rollout hierarchy (A-ROLLOUT)."
    )
    timezone: str = Field("Asia/Shanghai", description="IANA time zone of the centre.")
    hours: OpeningHours = Field(default_factory=OpeningHours, description="Opening hours.")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="MQTT broker.")


#: What a window is for (the standard's roles: 总服务台, 综合窗口, 帮办窗口); the role
#: decides which rules run (agent/rules/engine.py).
Role = Literal["front_desk", "comprehensive", "help_desk"]


class MotionSensorConfig(ConfigModel):
    """A PIR motion sensor (HC-SR501 and the like) aimed at the citizen's side of a front
    desk, read with gpiozero's ``MotionSensor``: its output is high while it sees motion."""

    type: Literal["pir"] = Field(description="A PIR motion sensor.")
    pin: BcmPin = Field(description="The sensor's output (OUT), driven high on motion.")


class DistanceSensorConfig(ConfigModel):
    """An HC-SR04 ultrasonic sensor looking across a front desk, read with gpiozero's
    ``DistanceSensor``: a citizen nearer than ``threshold_m`` is at the desk. ECHO is a 5 V
    signal: wire it through a voltage divider (or use a 3.3 V HC-SR04P)."""

    type: Literal["ultrasonic"] = Field(description="An HC-SR04 ultrasonic distance sensor.")
    echo: BcmPin = Field(description="The sensor's ECHO (through the divider).")
    trigger: BcmPin = Field(description="The sensor's TRIG.")
    threshold_m: float = Field(
        0.8, gt=0, le=4.0, description="A citizen nearer than this (metres) is at the desk."
    )
    max_distance_m: float = Field(
        2.0, gt=0, le=4.0, description="Farthest distance measured (metres); beyond reads as it."
    )

    @model_validator(mode="after")
    def _threshold_inside_range(self) -> Self:
        if self.threshold_m >= self.max_distance_m:
            raise ValueError("threshold_m must be below max_distance_m")
        return self


#: A front desk's citizen-presence sensor, chosen by its ``type``.
PresenceConfig = Annotated[MotionSensorConfig | DistanceSensorConfig, Field(discriminator="type")]


class GpioConfig(ConfigModel):
    call_button: BcmPin | None = Field(
        None,
        description="Caller bell / call-next key (opens a session); every window but a "
        "front desk with a presence sensor has one.",
    )
    finish_button: BcmPin | None = Field(None, description="Optional finish-service key.")
    eval_buttons: list[BcmPin] = Field(
        description="Evaluation panel, best rating first: 5 pins, or 3 for a 3-button panel."
    )
    sign_sensor: BcmPin = Field(description="Reed/hall switch in the please-wait sign holder.")
    status_led: BcmPin | None = Field(None, description="Status LED.")
    buzzer: BcmPin | None = Field(None, description="Acknowledgement buzzer.")
    bounce_ms: int = Field(50, ge=0, le=1000, description="Debounce for every button.")
    presence: PresenceConfig | None = Field(
        None,
        description="Front desk only: the sensor that sees a citizen come to the desk (F-RECEIVE).",
    )

    @model_validator(mode="after")
    def _pins_distinct(self) -> Self:
        if len(self.eval_buttons) not in (3, 5):
            raise ValueError("eval_buttons must list 5 pins (or 3 for a 3-button panel)")
        used = [
            ("call_button", self.call_button),
            ("finish_button", self.finish_button),
            *((f"eval_buttons[{i}]", p) for i, p in enumerate(self.eval_buttons)),
            ("sign_sensor", self.sign_sensor),
            ("status_led", self.status_led),
            ("buzzer", self.buzzer),
        ]
        if isinstance(self.presence, MotionSensorConfig):
            used.append(("presence.pin", self.presence.pin))
        elif isinstance(self.presence, DistanceSensorConfig):
            used += [
                ("presence.echo", self.presence.echo),
                ("presence.trigger", self.presence.trigger),
            ]
        counts = Counter(pin for _, pin in used if pin is not None)
        clashes = [
            f"GPIO{pin} used by " + " and ".join(name for name, p in used if p == pin)
            for pin, n in counts.items()
            if n > 1
        ]
        if clashes:
            raise ValueError("; ".join(clashes))
        return self


class CameraConfig(ConfigModel):
    source: Literal["picamera2", "v4l2", "replay"] = Field("picamera2", description="Frame source.")
    device: str | None = Field(
        None, description="V4L2 device (/dev/video0) or replay file/directory."
    )
    lores_width: int = Field(320, ge=64, le=1280, description="Analysis stream width.")
    lores_height: int = Field(240, ge=48, le=960, description="Analysis stream height.")
    idle_fps: float = Field(2.0, gt=0, le=30, description="Frame rate when nothing happens.")
    active_fps: float = Field(10.0, gt=0, le=30, description="Frame rate around calls/farewells.")


class RuleConfig(ConfigModel):
    stand_within_s: float = Field(
        5.0, gt=0, description="Stand up within this after a call (front desk: an arrival)."
    )
    greet_within_s: float = Field(
        8.0, gt=0, description="Smile within this after a call (front desk: an arrival)."
    )
    farewell_within_s: float = Field(5.0, gt=0, description="Stand within this of session end.")
    see_off_s: float = Field(3.0, gt=0, description="Stay standing this long to see off.")
    away_after_s: float = Field(60.0, gt=0, description="No face this long = away.")
    sign_present_flag_s: float = Field(
        300.0, gt=0, description="Sign up with the clerk present this long is flagged."
    )
    repeat_press_s: float = Field(3.0, ge=0, description="Presses closer than this are suspect.")
    session_timeout_s: float = Field(1800.0, gt=0, description="Close a forgotten session.")
    presence_hold_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="Front desk: a citizen the presence sensor has not seen for this long has "
        "left (ends the reception); bridges a PIR's quiet spells while they stand still.",
    )
    smile_threshold: float = Field(0.5, ge=0, le=1, description="Smile score counted as smile.")
    too_broad_threshold: float = Field(
        0.97, ge=0, le=1, description="Smile intensity beyond 'not too broad'."
    )
    no_smile_below: float | None = Field(
        0.2,
        ge=0,
        le=1,
        description="A smile score counts as 'seen not smiling' only below this; between it "
        "and smile_threshold the classifier is unsure and the frame is 'not observed' for "
        "the smile. None: every score below smile_threshold is seen not smiling.",
    )
    min_observed_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="A 'did not' verdict (stand, smile, see-off) needs the camera to have "
        "seen the clerk (or the empty seat) for at least this share of the time the rule "
        "looked; less is 'not observed', never a failure.",
    )

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Self:
        if self.too_broad_threshold <= self.smile_threshold:
            raise ValueError("too_broad_threshold must be above smile_threshold")
        if self.no_smile_below is not None and self.no_smile_below > self.smile_threshold:
            raise ValueError("no_smile_below must not be above smile_threshold")
        return self


class BadgeConfig(ConfigModel):
    """The clerks' USB badge reader (``agent/hardware/badge.py``; needs evdev and a clerk
    directory, ``WW_CLERK_DIRECTORY``, to sign anyone in)."""

    device: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^\S(.*\S)?$",
        description="The reader's input device: its stable path "
        "(/dev/input/by-id/usb-...-event-kbd) or the name it reports (e.g. 'HID c216:0180').",
    )


class WindowConfig(ConfigModel):
    window: Slug = Field(description="Window slug used in MQTT topics.")
    label: str = Field(description="Label shown to citizens, e.g. '3号窗口'.")
    role: Role = Field(
        description="Window role: 总服务台, 综合窗口 or 帮办窗口; a front desk runs the "
        "reception rules (F-RECEIVE), the others the window rules."
    )
    gpio: GpioConfig = Field(description="Wiring of buttons, sensors and outputs.")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Camera.")
    rules: RuleConfig = Field(default_factory=RuleConfig, description="Rule thresholds.")
    badge: BadgeConfig | None = Field(
        None, description="The clerks' badge reader, if the window has one."
    )

    @model_validator(mode="after")
    def _wired_for_its_role(self) -> Self:
        g = self.gpio
        if self.role == "front_desk":
            if g.presence is None and g.call_button is None:
                raise ValueError(
                    "gpio: a front desk needs gpio.presence (a PIR or ultrasonic sensor) or "
                    "gpio.call_button to open its receptions"
                )
        elif g.presence is not None:
            raise ValueError(f"gpio.presence: only a front desk has one, not a {self.role} window")
        elif g.call_button is None:
            raise ValueError(f"gpio.call_button: a {self.role} window needs its caller bell")
        return self


@dataclass(frozen=True)
class Site:
    """A validated site directory."""

    path: Path
    site: SiteConfig
    windows: tuple[WindowConfig, ...]

    def window(self, slug: str) -> WindowConfig:
        for w in self.windows:
            if w.window == slug:
                return w
        raise KeyError(slug)


class ConfigError(ValueError):
    """One or more configuration problems, each as 'file: field: reason'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _read(path: Path, model: type[ConfigModel], problems: list[str]) -> ConfigModel | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path}: (file): missing")
        return None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: (file): not valid TOML: {exc}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(f"{path}: {_loc(err['loc'])}: {err['msg']}")
        return None


def load_window(path: Path) -> WindowConfig:
    problems: list[str] = []
    cfg = _read(path, WindowConfig, problems)
    if cfg is None:
        raise ConfigError(problems)
    assert isinstance(cfg, WindowConfig)
    return cfg


def load_site(path: Path) -> Site:
    """Validate a site directory (or its site.toml); raise ConfigError listing all problems."""
    root = path.parent if path.is_file() else path
    problems: list[str] = []
    if not root.is_dir():
        raise ConfigError([f"{root}: (file): missing site directory"])
    site = _read(root / "site.toml", SiteConfig, problems)
    files = sorted((root / "windows").glob("*.toml"))
    if not files:
        problems.append(f"{root / 'windows'}: (file): no window files (*.toml)")
    windows: list[WindowConfig] = []
    seen: dict[str, Path] = {}
    for f in files:
        w = _read(f, WindowConfig, problems)
        if w is None:
            continue
        assert isinstance(w, WindowConfig)
        if w.window in seen:
            problems.append(f"{f}: window: '{w.window}' already used by {seen[w.window]}")
            continue
        seen[w.window] = f
        windows.append(w)
    if problems:
        raise ConfigError(problems)
    assert isinstance(site, SiteConfig)
    return Site(path=root, site=site, windows=tuple(windows))

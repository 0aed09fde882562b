"""MQTT clients (paho-mqtt 2, callback API v2): one place that builds them, and the publisher
of signed readings and commands at QoS 1.

`publish` returns only once the broker has acknowledged, which is the moment
a reading may be forgotten by the device. The Publisher speaks MQTT 5 for one reason: its PUBACK says
whether any subscription took the message (reason 16, "no matching subscribers"). Mosquitto 2.0.11
does not restore shared subscriptions (`$share/…`, the ingest's) from its persistence file, so after a
broker restart, until the ingest subscribes again, a device's readings would be acknowledged and
dropped; a device that sees reason 16 keeps the reading and sends it again (citygrid.edge.outbox_sender).
Every client citygrid opens (devices, the ingest, the traffic advisor) is made by `mqtt_client`, so TLS,
credentials and session settings are set in one place.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citygrid.errors import CitygridError, ConfigError
from citygrid.settings import MqttSettings

log = structlog.get_logger(__name__)


class PublishError(CitygridError):
    """The broker could not be reached or did not acknowledge in time."""


NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code: accepted, but no subscription took it
SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 session expiry: kept as MQTT 3.1.1's clean_session=False is


def mqtt_client(s: MqttSettings, client_id: str, manual_ack: bool = False,
                clean_session: bool = False, v5: bool = False) -> mqtt.Client:
    """A TLS client with the configured identity; by default with a persistent session, so the broker
    keeps what it owes this client while it is away (an observer that must leave nothing behind asks
    for a clean one). An identity bound to one client id (`s.client_id`) always connects under it.
    With `v5` the client speaks MQTT 5 and connects with `connect_options(clean_session)`."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id or client_id,
        clean_session=None if v5 else clean_session,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=manual_ack,
    )
    client.tls_set_context(tls_context(s))
    if s.username:
        client.username_pw_set(s.username, s.password)
    return client


def connect_options(clean_session: bool = False) -> dict[str, object]:
    """What an MQTT 5 client passes to connect for MQTT 3.1.1's session semantics."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean_session else SESSION_NEVER_EXPIRES
    return {"clean_start": clean_session, "properties": props}


def tls_context(s: MqttSettings) -> ssl.SSLContext:
    """TLS 1.2+ trusting only the configured CA, with the broker's host name checked."""
    if s.ca_file is None or not Path(s.ca_file).exists():
        raise ConfigError(f"MQTT CA certificate {s.ca_file} not found; set CITYGRID_MQTT__CA_FILE "
                          "(the local platform makes its own with `citygrid servers up`)")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Publisher:
    """One device's (or service's) connection to the broker."""

    def __init__(self, s: MqttSettings, client_id: str) -> None:
        self.settings = s
        self.client = mqtt_client(s, client_id, v5=True)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        # Come back quickly after an outage: the outbox is waiting.
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._connected = threading.Event()
        self._answered = threading.Event()  # the broker accepted or refused the last attempt
        self.refused: str | None = None
        self.subscriptions: list[str] = []
        self.on_ack: Callable[[int], None] | None = None
        # A PUBACK saying no subscription took the message: the broker did not keep it.
        self.on_unrouted: Callable[[int], None] | None = None
        self.on_connected: Callable[[], None] | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt_connect_refused", reason=str(reason_code))
            self.refused = str(reason_code)
            self._answered.set()
            return
        self.refused = None
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()
        self._answered.set()
        if self.on_connected is not None:
            self.on_connected()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code == NO_MATCHING_SUBSCRIBERS and self.on_unrouted is not None:
            self.on_unrouted(mid)
        elif self.on_ack is not None:
            self.on_ack(mid)

    @property
    def connected(self) -> bool:
        """Whether the broker session is up right now."""
        return self._connected.is_set()

    def subscribe(self, topic: str, handler: Callable[[mqtt.MQTTMessage], None]) -> None:
        """Receive messages on `topic` (QoS 1), renewed after every reconnect."""
        self.subscriptions.append(topic)
        self.client.message_callback_add(topic, lambda c, u, msg: handler(msg))
        if self.connected:
            self.client.subscribe(topic, qos=1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect and start the network loop; raise PublishError if the broker is away."""
        try:
            self.client.connect(self.settings.host, self.settings.port, keepalive=30, **connect_options())
        except OSError as exc:  # ssl.SSLError (an untrusted or mismatched certificate) included
            raise PublishError(
                f"cannot reach MQTT broker {self.settings.host}:{self.settings.port}: {exc}"
            ) from exc
        self.client.loop_start()
        self._answered.wait(timeout_s)
        if not self._connected.is_set():
            self.close()
            raise PublishError(f"MQTT broker did not accept the connection: {self.refused or 'no answer'}")

    def start(self) -> None:
        """Connect in the background and keep reconnecting: for an agent that must start (and
        fill its outbox) while the broker is away."""
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30, **connect_options())
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self.publish_async(topic, payload)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise PublishError(f"no PUBACK for message {info.mid} within {timeout_s}s")

    def publish_async(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1; the caller waits on the returned info."""
        info = self.client.publish(topic, payload, qos=self.settings.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")
        return info

    def close(self) -> None:
        """Disconnect cleanly."""
        self.client.disconnect()
        self.client.loop_stop()

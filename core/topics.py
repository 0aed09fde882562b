"""Every MQTT and Kafka topic name citygrid uses, built and parsed in this one module.

MQTT (device ↔ broker):
  {readings_root}/<district>/<device>   a device's signed readings
  {commands_root}/<district>/<device>   commands to a device (signal advice, …)
  {models_root}/<device>                signed model updates for a device
Kafka: the topic names are settings (`KafkaSettings`), so a deployment can
prefix them; the names derived from them (the stream app's internal topics,
consumer groups) and the record headers are made here.
"""

from __future__ import annotations

from citygrid.settings import CitygridSettings, KafkaSettings

# The Kafka record header in which the ingest passes on a reading's district (from its MQTT topic).
DISTRICT_HEADER = "district"


def readings_topic(readings_root: str, district: str, device: str) -> str:
    """The MQTT topic a device publishes its readings on."""
    return f"{readings_root}/{district}/{device}"


def readings_filter(readings_root: str) -> str:
    """The MQTT filter covering every district's and device's readings."""
    return f"{readings_root}/+/+"


def shared_readings_filter(readings_root: str, ingest_name: str) -> str:
    """The readings filter as one shared subscription (`$share/<group>/…`, MQTT 5; Mosquitto accepts it
    from 3.1.1 clients too) of the group named after the ingest: the broker hands each reading to one
    of the ingest's instances."""
    return f"$share/{ingest_name}/{readings_filter(readings_root)}"


def parse_readings_topic(readings_root: str, topic: str) -> tuple[str, str] | None:
    """(district, device) of a readings topic, or None if `topic` is not one."""
    prefix = readings_root + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix):].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def commands_topic(commands_root: str, district: str, device: str) -> str:
    """The MQTT topic a device receives its commands on."""
    return f"{commands_root}/{district}/{device}"


def model_updates_topic(models_root: str, device: str) -> str:
    """The MQTT topic a device receives its signed model updates on."""
    return f"{models_root}/{device}"


def verified_readings_topic(k: KafkaSettings) -> str:
    """Where the ingest's instances write the readings they verified, keyed by device, before the dedupe
    stage lets each (device, seq) into the readings topic once (citygrid.stream.dedupe)."""
    return f"{k.readings_topic}.verified"


def dedupe_state_topic(k: KafkaSettings) -> str:
    """The dedupe stage's compacted changelog: each device's replay window, keyed by device, partitioned
    as the verified readings are."""
    return f"{k.readings_topic}.dedupe-state"


def aggregate_members_topic(k: KafkaSettings) -> str:
    """The stream app's internal topic re-keying readings by feeder or intersection."""
    return f"{k.stream_app_id}-aggregate-members"


def advisor_group(k: KafkaSettings) -> str:
    """The traffic advisor's consumer group, derived from the stream app id so deployments stay apart."""
    return f"{k.stream_app_id}-traffic-advisor"


def cleared_orders_topic(k: KafkaSettings) -> str:
    """Where the market publishes each cleared interval's signed orders (a record each, keyed by interval)."""
    return f"{k.orders_topic}.cleared"


def interval_summaries_topic(k: KafkaSettings) -> str:
    """Where the market publishes each cleared interval's summary (orders root, price, trades hash)."""
    return f"{k.trades_topic}.summaries"


def market_topics(k: KafkaSettings) -> list[str]:
    """The market's own topics: signed orders in; trades, cleared orders and summaries out."""
    return [k.orders_topic, k.trades_topic, cleared_orders_topic(k), interval_summaries_topic(k)]


def bidder_group(k: KafkaSettings, participant: str) -> str:
    """The consumer group of one participant's bidder (it reads the forecasts of its own devices)."""
    return f"{k.stream_app_id}-bidder-{participant}"


def dead_letters_topic(source_topic: str, consumer: str) -> str:
    """Where `consumer` puts the records of `source_topic` it cannot process: one topic per consumer
    (`trades.settler.dead`, `readings.anchorer.dead`), so each can be granted to its one writer."""
    return f"{source_topic}.{consumer}.dead"


def worker_output_topics(s: CitygridSettings) -> list[str]:
    """The topics a stream worker writes: what it creates at start (its principal may create only these)."""
    k = s.kafka
    dead = [dead_letters_topic(t, "worker") for t in
            (k.readings_topic, aggregate_members_topic(k), k.orders_topic, k.forecasts_topic)]
    return [k.stats_topic, k.forecasts_topic, k.alerts_topic, *market_topics(k), *dead]


def stream_output_topics(s: CitygridSettings) -> list[str]:
    """The Kafka topics the ingest and the stream workers write (created at start if missing)."""
    k = s.kafka
    # The stream workers' own dead letters, one topic per topic they consume (their principal "worker").
    dead = [dead_letters_topic(t, "worker") for t in
            (k.readings_topic, aggregate_members_topic(k), k.orders_topic, k.forecasts_topic)]
    return [k.readings_topic, k.dead_letter_topic, k.stats_topic, k.forecasts_topic, k.alerts_topic,
            *market_topics(k), *dead]

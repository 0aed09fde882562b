"""One settings object per process, read from CITYGRID_* environment variables and a file.

Every part (edge, stream, ledger) reads the same object so that a deployment
configures ports, topics and endpoints in exactly one place.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MqttSettings(BaseModel):
    """Where the MQTT broker is and how readings are addressed on it."""

    host: str = "127.0.0.1"
    port: int = 18830
    username: str | None = None
    password: str | None = None
    readings_topic: str = "citygrid/readings"
    commands_topic: str = "citygrid/commands"
    ingest_client_id: str = "citygrid-ingest"
    qos: int = 1


class KafkaSettings(BaseModel):
    """Kafka bootstrap address and the topic names every process agrees on."""

    bootstrap: str = "127.0.0.1:19092"
    readings_topic: str = "readings"
    dead_letter_topic: str = "readings.dead"
    stats_topic: str = "device.stats"
    partitions: int = 4
    stream_app_id: str = "citygrid-stream"
    anchor_group: str = "citygrid-anchorer"


class ChainSettings(BaseModel):
    """The Substrate node to anchor on, and the signer's secret URI.

    The default signer is the well-known development account //Alice, which
    only exists on dev chains; production sets CITYGRID_CHAIN__SIGNER_URI from
    a secret store.
    """

    url: str = "ws://127.0.0.1:8011"
    port: int = 8011
    signer_uri: str = Field(default="//Alice", repr=False)


class AnchorSettings(BaseModel):
    """How readings are grouped into Merkle batches."""

    interval_s: int = 900
    idle_flush_s: float = 3.0
    max_batch: int = 1_000_000


class MarketSettings(BaseModel):
    """The per-interval energy double auction (prices in planck per Wh, energy in Wh)."""

    interval_s: int = 900
    gate_s: float = 5.0
    tick_s: float = 1.0
    grid_fee: int = 100_000
    mechanism: str = "pay_as_clear"
    orders_topic: str = "market.orders"
    trades_topic: str = "trades"
    # JSON: {"participants": {name: {"buy_limit", "sell_limit", "devices": [device ids]}}}; unset, no
    # forecast turns into an order (participants then send their own orders to orders_topic).
    participants_file: Path | None = None


class SettlementSettings(BaseModel):
    """Settling cleared trades on chain: who signs, where participants' keys live.

    Every buyer approves the settler an allowance of the payment asset (assets.approve_transfer),
    so one batch_all per interval moves every buyer's payment atomically. Secrets come
    from the keystore file or CITYGRID_SETTLEMENT__SETTLER_URI, never from the repository.
    """

    settler_uri: str = Field(default="", repr=False)
    grid_operator: str = ""
    asset_id: int = 4242  # the Asset Hub asset trades are paid in
    allowance: int = 10**18  # what `citygrid ledger authorize` lets the settler spend per buyer
    keystore: Path = Path(".run/keystore.json")
    group: str = "citygrid-settler"
    max_trades_per_extrinsic: int = 500  # ≈546 fit a block by weight (benchmarks.ledger_settle)


class GrafanaSettings(BaseModel):
    """Where `citygrid dashboards push` provisions dashboards, and the Prometheus Grafana should query.

    Set CITYGRID_GRAFANA__TOKEN (a service-account token) or user and password from a secret store.
    """

    url: str = "http://127.0.0.1:3000"
    token: str | None = Field(default=None, repr=False)
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    folder: str = "citygrid"
    prometheus_url: str = "http://127.0.0.1:19090"
    timeout_s: float = 10.0


class PrometheusSettings(BaseModel):
    """The local Prometheus that scrapes the local platform's processes (demo and tests)."""

    port: int = 19090
    scrape_interval_s: int = 5


class StreamSettings(BaseModel):
    """The stream layer's outputs, online models and ingest replay protection."""

    forecasts_topic: str = "forecasts"
    alerts_topic: str = "alerts"
    model: str = "river_linear"  # a name in citygrid.stream.forecasting.MODELS
    energy_step_s: int = 900  # SimBench's quarter-hours
    energy_season_steps: int = 96  # one day
    traffic_kinds: str = "traffic"  # comma-separated reading kinds forecast as traffic counts
    traffic_step_s: int = 60
    traffic_season_steps: int = 15  # one SUMO demand period, not a day: the runs are short
    anomaly_detector: str = "gaussian_residual"  # or "half_space_trees" (set a threshold near 0.95)
    anomaly_threshold: float = 0.99999
    anomaly_warmup: int = 96
    batch_max: int = 500  # readings a worker learns per table checkpoint
    batch_within_s: float = 0.2
    ingest_replay_tail: int = 200_000  # records per readings partition re-read at ingest start
    # Live feeder (energy) and intersection (traffic) forecasts: one group per district and kind.
    aggregate_energy_kinds: str = "meter,pv"  # comma-separated kinds summed per feeder
    # An interval closes once every member reported a later one, or this many intervals passed.
    aggregate_max_lag_steps: int = 8


class EdgeSettings(BaseModel):
    """The edge agent: its outbox's disk budget, its models and whom it trusts for model updates.

    Outbox policy when full: "drop_oldest" deletes the oldest unsent readings (counted in
    citygrid_edge_outbox_dropped_total) so a device that is offline for days keeps its most
    recent data; "refuse" raises OutboxFull so the caller keeps the oldest instead.
    """

    outbox_max_bytes: int = 64 * 1024 * 1024
    outbox_full_policy: str = "drop_oldest"
    # NORMAL survives a killed process (WAL); FULL also survives power loss, at a write cost.
    outbox_synchronous: str = "NORMAL"
    max_inflight: int = 1000
    models_dir: Path = Path(".run/models")
    model_updates_topic: str = "citygrid/models"
    # Hex ed25519 public key of the operator who signs model updates; empty refuses all updates.
    operator_public_key: str = ""
    intra_op_threads: int = 1


class TrafficSettings(BaseModel):
    """The traffic closed loop: how intersections are advised and what bounds they keep regardless.

    The bounds are enforced on the intersection itself, so a wrong or malicious advice can never
    shorten a green below `min_green_s`, change the fixed yellow/all-red, or stretch the cycle.
    """

    interval_s: int = 60  # detector counting and advice period
    min_green_s: float = 5.0
    max_green_s: float = 60.0
    min_cycle_s: float = 20.0
    max_cycle_s: float = 120.0
    saturation_veh_h: float = 1800.0  # per lane, the textbook value for a through lane
    lost_s_per_phase: float = 4.0  # start-up loss plus the yellow not used
    fallback_after: int = 3  # intervals without advice before an intersection runs its own plan
    # Advised greens as ceilings that the intersection's own loops may end early (gap-out), or as fixed.
    local_actuation: bool = True
    district: str = "traffic"


class CitygridSettings(BaseSettings):
    """All configuration of a citygrid process."""

    model_config = SettingsConfigDict(
        env_prefix="CITYGRID_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    data_dir: Path = Path(".run")
    device_registry: Path = Path(".run/devices.json")
    metrics_port: int = 0
    # 0.0.0.0 inside a Kubernetes pod so Prometheus can scrape it; loopback on a workstation.
    metrics_host: str = "127.0.0.1"
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    chain: ChainSettings = ChainSettings()
    anchor: AnchorSettings = AnchorSettings()
    stream: StreamSettings = StreamSettings()
    market: MarketSettings = MarketSettings()
    settlement: SettlementSettings = SettlementSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    edge: EdgeSettings = EdgeSettings()
    traffic: TrafficSettings = TrafficSettings()

    def as_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (on top of `base`, default os.environ) that gives a child process
        exactly these settings."""
        env = dict(os.environ if base is None else base)
        for name, value in self.model_dump(mode="json").items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    if v is not None:
                        env[f"CITYGRID_{name.upper()}__{sub.upper()}"] = str(v)
            else:
                env[f"CITYGRID_{name.upper()}"] = str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> CitygridSettings:
    """The process-wide settings, read once."""
    return CitygridSettings()

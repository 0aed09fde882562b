"""One settings object per process, read from CITYGRID_* environment variables and a file.

Every part (edge, stream, ledger) reads the same object so that a deployment
configures ports, topics and endpoints in exactly one place.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The online forecasters (citygrid.stream.forecasting.MODELS) and anomaly detectors
# (citygrid.stream.anomaly.DETECTORS) by name; a unit test keeps these lists and the registries equal.
ForecastModel = Literal["river_pick", "river_lad", "river_log_lad", "river_select", "river_tree",
                        "river_linear", "persistence", "seasonal_naive", "smart_persistence"]
AnomalyDetector = Literal["gaussian_residual", "half_space_trees"]


def _comma_list(value: object) -> object:
    """A list setting may be given as "a,b,c" in an environment variable, or as a JSON list."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            return json.loads(value)
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class _Section(BaseModel):
    # A misspelt setting inside a section is an error at start, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class PathSettings(_Section):
    """Where a process keeps its state and finds cached data. Relative paths are taken from the
    working directory (the checkout, for the local platform) and made absolute at start; a file left
    unset lives under data_dir."""

    data_dir: Path = Path(".run")
    cache_dir: Path = Path(".cache")  # downloaded data and tools: SimBench, SUMO scenarios, Kafka jars
    device_registry: Path | None = None  # <data_dir>/devices.json
    keystore: Path | None = None  # <data_dir>/keystore.json
    models_dir: Path | None = None  # <data_dir>/models
    anchor_store: Path | None = None  # <data_dir>/anchors.sqlite
    settlement_store: Path | None = None  # <data_dir>/settlements.sqlite
    logs_dir: Path | None = None  # <data_dir>/logs: child processes of the demo
    servers_dir: Path | None = None  # <data_dir>/servers: the local servers' config, data and pid files
    # The market participants' registry (public: addresses, order keys, buses, devices, limits), read by
    # the market, each participant's bidder and the settler (citygrid.participants).
    participants: Path | None = None  # <data_dir>/participants.json

    @model_validator(mode="after")
    def _derive(self) -> PathSettings:
        defaults = {"device_registry": "devices.json", "keystore": "keystore.json", "models_dir": "models",
                    "anchor_store": "anchors.sqlite", "settlement_store": "settlements.sqlite",
                    "logs_dir": "logs", "servers_dir": "servers", "participants": "participants.json"}
        # Absolute from the start: child processes and servers run in other working directories.
        object.__setattr__(self, "data_dir", self.data_dir.absolute())
        object.__setattr__(self, "cache_dir", self.cache_dir.absolute())
        for name, file in defaults.items():
            value = getattr(self, name)
            object.__setattr__(self, name, self.data_dir / file if value is None else value.absolute())
        return self

    @classmethod
    def under(cls, data_dir: Path, cache_dir: Path | None = None) -> PathSettings:
        """Every state path under `data_dir` (the cache kept unless given)."""
        return cls(data_dir=data_dir, **({"cache_dir": cache_dir} if cache_dir else {}))


class MqttSettings(_Section):
    """Where the MQTT broker is, who this process is on it, and how readings are addressed.

    Every connection is TLS, checked against `ca_file` with the host name verified; the broker knows
    each device and service by its own username and password (Mosquitto's dynamic-security plugin)
    and binds each identity to one client id (`client_id`), so nobody can take another's session.
    """

    host: str = "127.0.0.1"
    port: int = 18830
    ca_file: Path | None = None  # the CA that signed the broker's certificate; <data_dir>/pki/ca.crt
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # The client id this identity is bound to on the broker; when set it is the only one used.
    client_id: str | None = None
    # The broker administrator's credentials (JSON file, 0600) for `citygrid edge enroll / revoke`
    # and the local platform's tooling only; never given to a device or a service.
    # Default <data_dir>/pki/mqtt-admin.json.
    admin_file: Path | None = None
    readings_topic: str = "citygrid/readings"
    commands_topic: str = "citygrid/commands"
    # The ingest's name: its shared subscription's group, and (with "-<k>") its instances' identities and
    # client ids; an instance connects as its own identity (`client_id`), a lone one under this name.
    ingest_client_id: str = "citygrid-ingest"
    qos: int = Field(default=1, ge=0, le=2)
    # Broker limits (the local broker's config and the Helm chart): the largest message (a model
    # update is the largest legitimate one) and what the broker queues per offline client.
    max_message_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_queued_messages: int = Field(default=2_000_000, ge=100)
    # A JSON file {"username", "password", "client_id"} (0600) that gives this process its identity in
    # place of the three settings above, so the password never stands in an environment or a unit: a
    # deployed agent reads the private copy systemd hands it (citygrid.ops.deploy).
    credentials_file: Path | None = None

    @model_validator(mode="after")
    def _identity_from_file(self) -> MqttSettings:
        if self.credentials_file is not None:
            username, password, client_id = read_identity(self.credentials_file)
            for name, value in (("username", username), ("password", password), ("client_id", client_id)):
                object.__setattr__(self, name, value)
        return self


def read_identity(path: Path) -> tuple[str, str, str]:
    """(username, password, client id) from a broker credentials file (JSON, 0600): the one reader of
    the format `citygrid edge service` and `citygrid edge deploy` write."""
    try:
        raw = json.loads(Path(path).read_text())
        return str(raw["username"]), str(raw["password"]), str(raw["client_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The error names the file and what is wrong with it, never its contents.
        raise ValueError(f"cannot read MQTT credentials {path}: {type(exc).__name__} {exc}") from None


class KafkaSettings(_Section):
    """Kafka bootstrap address and the topic names every process agrees on (see citygrid.topics)."""

    bootstrap: str = "127.0.0.1:19092"
    readings_topic: str = "readings"
    dead_letter_topic: str = "readings.dead"
    stats_topic: str = "device.stats"
    forecasts_topic: str = "forecasts"
    alerts_topic: str = "alerts"
    orders_topic: str = "market.orders"
    trades_topic: str = "trades"
    partitions: int = Field(default=4, ge=1)
    stream_app_id: str = "citygrid-stream"
    anchor_group: str = "citygrid-anchorer"
    # The ingest's dedupe stage: its consumer group, and the prefix of its instances' transactional ids.
    ingest_group: str = "citygrid-ingest"
    # How this process authenticates: SASL/SCRAM over TLS as its own principal (one per service,
    # each with ACLs for its own topics only). PLAINTEXT exists for a broker outside citygrid's
    # control during migration; the local platform and the chart never use it.
    security_protocol: Literal["SASL_SSL", "PLAINTEXT"] = "SASL_SSL"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    username: str = ""
    password: str = Field(default="", repr=False)
    ca_file: Path | None = None  # the CA that signed the brokers' certificates (default: system CAs)


class ChainSettings(_Section):
    """The Substrate node to anchor on, and the signer's secret URI.

    The anchorer and the settler sign with their own key: the keystore file's "anchorer" or
    "settler" entry if it holds one, else this URI (CITYGRID_CHAIN__SIGNER_URI, from a Kubernetes
    Secret). The default //Alice is a well-known development key: a process refuses to start with a
    development key unless the node says it is a development chain (system_chainType "Development"
    or "Local"; see citygrid.ledger.signer).
    """

    url: str = "ws://127.0.0.1:8011"
    port: int = 8011  # where the local dev chain listens (citygrid servers up)
    signer_uri: str = Field(default="//Alice", repr=False)
    # The local dev chain's genesis (a raw chain spec), kept in the project's shared folder beside the
    # checkout; relative to the working directory.
    genesis: Path = Path("../shared/chain/asset-hub-paseo-local.raw.json")


class AnchorSettings(_Section):
    """How readings are grouped into Merkle batches."""

    interval_s: int = 900
    idle_flush_s: float = 3.0
    max_batch: int = 1_000_000
    # Processes that re-verify polled readings while the next poll is fetched (citygrid.reading_check.
    # BatchChecks): 2 keeps re-verification off the consumer's core on a 2-core node.
    verify_workers: int = Field(default=2, ge=1, le=64)


class MarketSettings(_Section):
    """The per-interval energy double auction (prices in planck per Wh, energy in Wh)."""

    interval_s: int = 900
    gate_s: float = 5.0
    tick_s: float = 1.0
    grid_fee: int = 100_000  # the flat market's fee (planck/Wh), used when no grid_code is set
    mechanism: Literal["pay_as_clear", "pay_as_bid"] = "pay_as_clear"
    # The market tree (citygrid.stream.market.grid): a SimBench code such as "1-LV-rural1--0-sw"; empty:
    # one flat market. Fees per market level a trade passes through (gsy-e's rule), keys "house",
    # "feeder", "substation", "grid": constant in planck/Wh, percentage in basis points.
    grid_code: str = ""
    fees_constant: dict[Literal["house", "feeder", "substation", "grid"], int] = Field(default_factory=dict)
    fees_percent_bp: dict[Literal["house", "feeder", "substation", "grid"], int] = Field(default_factory=dict)


class DeliverySettings(_Section):
    """The delivery check: each interval's trades against what anchored readings show was delivered.

    A shortfall counts once it exceeds tolerance_wh + tolerance_pct of the traded energy. The default
    2 % is the accuracy of the meters a household has (IEC 62053-21 class 2 / EN 50470-3 class A,
    ±2 % of active energy), so a meter's own error never raises an alert; the 1 Wh covers trades being
    whole watt-hours. A reading's power holds until the device's next reading, at most max_hold_s:
    the default 900 s is SimBench's profile step, the slowest cadence a citygrid meter reports at.
    """

    tolerance_pct: float = Field(default=2.0, ge=0, le=100)
    tolerance_wh: float = Field(default=1.0, ge=0)
    max_hold_s: int = Field(default=900, gt=0)


class SettlementSettings(_Section):
    """Settling cleared trades on chain: who may be paid, which asset pays, how much may be approved.

    Every buyer approves the settler a bounded allowance of the payment asset with its own key
    (assets.approve_transfer), so one batch_all per interval moves every buyer's payment atomically.
    The settler holds no participant's key: it signs with its own (the keystore's "settler" entry, else
    CITYGRID_CHAIN__SIGNER_URI); secrets never come from the repository.
    """

    grid_operator: str = ""  # the enrolled participant (name) grid fees are paid to; empty: "grid"
    asset_id: int = Field(default=4242, ge=0, le=2**32 - 1)  # the Asset Hub asset trades are paid in
    # The most one participant may approve the settler to spend (`citygrid ledger authorize`), in the
    # asset's smallest unit: the operator's cap on what a settler key could ever move from one account
    # (a day of a household's purchases: 100 units of a 10-decimal asset).
    allowance_cap: int = Field(default=100 * 10**10, gt=0, le=2**63 - 1)
    group: str = "citygrid-settler"
    # How long an interval's records (summary, signed orders, trades) may stay incomplete or unproven
    # before what the settler holds of it is dead-lettered instead of paid; the market publishes them
    # together, so this only bounds how long a forged or partial interval holds back offset commits.
    evidence_wait_s: float = Field(default=60.0, gt=0)
    max_trades_per_extrinsic: int = 500  # ≈546 fit a block by weight (benchmarks.ledger_settle)
    # Test hook: the settler kills itself at this step ("after_submit", …) to prove crash safety.
    crash_at: Literal["", "prepared", "signed", "submitted", "included", "settled"] = ""


class GrafanaSettings(_Section):
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


class PrometheusSettings(_Section):
    """The local Prometheus that scrapes the local platform's processes (demo and tests)."""

    port: int = 19090
    scrape_interval_s: int = 5


class LocalSettings(_Section):
    """The local platform's servers (citygrid servers, the demo, the test fixtures)."""

    # Leave servers a test session started running for the next session (saves their start-up).
    keep_servers: bool = False


class StreamSettings(_Section):
    """The stream layer's online models, batching and ingest replay protection."""

    model: ForecastModel = "river_pick"
    # Reading kinds forecast as PV: clear-sky features, smart persistence, daylight-only scores.
    solar_kinds: Annotated[list[str], NoDecode] = ["pv"]
    # The site whose clear sky PV is forecast under (degrees north, east); default: SimBench's LV grids.
    site_latitude: float = Field(default=53.64, ge=-90, le=90)
    site_longitude: float = Field(default=11.41, ge=-180, le=180)
    energy_step_s: int = 900  # SimBench's quarter-hours
    energy_season_steps: int = 96  # one day
    # Reading kinds forecast as traffic counts (a list, or "a,b" in the environment).
    traffic_kinds: Annotated[list[str], NoDecode] = ["traffic"]
    traffic_step_s: int = 60
    traffic_season_steps: int = 15  # one SUMO demand period, not a day: the runs are short
    anomaly_detector: AnomalyDetector = "gaussian_residual"  # half_space_trees: threshold near 0.95
    anomaly_threshold: float = 0.99999
    anomaly_warmup: int = 96
    batch_max: int = 500  # readings a worker learns per table checkpoint
    batch_within_s: float = 0.2
    # The ingest's dedupe stage (citygrid.stream.dedupe): verified readings decided per Kafka transaction,
    # and how long a transaction of a killed instance may hold back read_committed consumers before
    # the broker aborts it (a restarted instance aborts it at once).
    ingest_dedupe_batch: int = Field(default=2000, ge=1)
    ingest_transaction_timeout_ms: int = Field(default=10_000, ge=1000)
    # A larger MQTT message is no reading: dead-lettered truncated (with its SHA-256 and length).
    ingest_max_payload_bytes: int = Field(default=16 * 1024, ge=1024)
    # Dead letters written per second per source (MQTT topic), with this burst; beyond, rejections are
    # counted and acknowledged but not written, so a flood cannot fill Kafka.
    dead_letter_rate_per_s: float = Field(default=5.0, gt=0)
    dead_letter_burst: int = Field(default=50, ge=1)
    # Live feeder (energy) and intersection (traffic) forecasts: one group per district and kind.
    aggregate_energy_kinds: Annotated[list[str], NoDecode] = ["meter", "pv"]  # kinds summed per feeder
    # An interval closes once every member reported a later one, or this many intervals passed.
    aggregate_max_lag_steps: int = 8
    # The secret that authenticates the workers' table state (HMAC-SHA256, checked before anything is
    # unpickled); only the workers hold it (CITYGRID_STREAM__STATE_KEY, from a Secret). A worker refuses
    # to start without one.
    state_key: str | None = Field(default=None, min_length=32, repr=False)

    @field_validator("traffic_kinds", "aggregate_energy_kinds", "solar_kinds", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _comma_list(value)


class EdgeSettings(_Section):
    """The edge agent: its outbox's disk budget, its models and whom it trusts for commands.

    Every command a device acts on (signal advice, a model update) is signed by the one command
    authority key whose public half the device gets from its deployment (`command_public_key`; it
    replaces the former operator_public_key: one key, one rotation); see citygrid.commands.

    Outbox policy when full: "drop_oldest" deletes the oldest unsent readings (counted in
    citygrid_edge_outbox_dropped_total) so a device that is offline for days keeps its most
    recent data; "refuse" raises OutboxFull so the caller keeps the oldest instead.
    """

    outbox_max_bytes: int = 64 * 1024 * 1024
    outbox_full_policy: Literal["drop_oldest", "refuse"] = "drop_oldest"
    # NORMAL survives a killed process (WAL); FULL also survives power loss, at a write cost.
    outbox_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    max_inflight: int = 1000
    model_updates_topic: str = "citygrid/models"
    # Hex ed25519 public key of the command authority (advisor, model publisher); empty refuses every
    # command, so an unconfigured device only ever runs its own plan and its installed model.
    command_public_key: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    # Size limits checked on the payload's length before anything is parsed or kept.
    max_command_bytes: int = Field(default=16 * 1024, ge=1024)
    max_model_update_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # How far a command's issue time may lie in the device's future (clock skew).
    command_max_skew_s: int = Field(default=300, ge=0)
    intra_op_threads: int = 1


class TrafficSettings(_Section):
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
    fallback_after: int = 3  # intervals without valid fresh advice before an intersection runs its own plan
    advice_ttl_s: int = Field(default=180, ge=1)  # an advice expires this long after it was signed
    # The command authority's ed25519 key (hex seed file, 0600) the advisor signs advice with; the
    # advisor refuses to start without it. Devices trust its public half (edge.command_public_key).
    command_key_file: Path | None = None
    # Advised greens as ceilings that the intersection's own loops may end early (gap-out), or as fixed.
    local_actuation: bool = True
    district: str = "traffic"


class CitygridSettings(BaseSettings):
    """All configuration of a citygrid process."""

    model_config = SettingsConfigDict(
        env_prefix="CITYGRID_",
        env_nested_delimiter="__",
        env_file=".env",
        # A CITYGRID_* variable that names no setting is an error at start, not silently ignored.
        extra="forbid",
    )

    # Where things are.
    paths: PathSettings = PathSettings()
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    chain: ChainSettings = ChainSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    # Every long-running process serves /metrics here (0 = not at all); 0.0.0.0 inside a Kubernetes pod
    # so Prometheus can scrape it, loopback on a workstation.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # What each process does.
    anchor: AnchorSettings = AnchorSettings()
    stream: StreamSettings = StreamSettings()
    market: MarketSettings = MarketSettings()
    settlement: SettlementSettings = SettlementSettings()
    delivery: DeliverySettings = DeliverySettings()
    edge: EdgeSettings = EdgeSettings()
    metrics_host: str = "127.0.0.1"
    traffic: TrafficSettings = TrafficSettings()
    # The local platform only.
    prometheus: PrometheusSettings = PrometheusSettings()
    local: LocalSettings = LocalSettings()

    @model_validator(mode="after")
    def _mqtt_files(self) -> CitygridSettings:
        # The local platform's CA and broker admin live beside its other state unless set.
        pki = self.paths.data_dir / "pki"
        files = {name: pki / file if getattr(self.mqtt, name) is None else getattr(self.mqtt, name).absolute()
                 for name, file in (("ca_file", "ca.crt"), ("admin_file", "mqtt-admin.json"))}
        object.__setattr__(self, "mqtt", self.mqtt.model_copy(update=files))
        return self

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> CitygridSettings:
        # pydantic-settings ignores an environment variable that names no field; a misspelt
        # CITYGRID_* variable must stop the process at start instead of leaving a default in force.
        prefix = self.model_config["env_prefix"]
        unknown = sorted(k for k in os.environ
                         if k.upper().startswith(prefix)
                         and k[len(prefix):].split("__")[0].lower() not in type(self).model_fields)
        if unknown:
            raise ValueError(f"unknown settings {', '.join(unknown)}; the settings are "
                             f"{', '.join(prefix + n.upper() for n in type(self).model_fields)}")
        return self

    def as_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (on top of `base`, default os.environ) that gives a child process
        exactly these settings."""
        env = dict(os.environ if base is None else base)
        for name, value in self.model_dump(mode="json").items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    if v is not None:
                        env[f"CITYGRID_{name.upper()}__{sub.upper()}"] = (
                            json.dumps(v) if isinstance(v, list | dict) else str(v))
            else:
                env[f"CITYGRID_{name.upper()}"] = str(value)
        return env


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment plus `extra`, for a child process that is not a citygrid process
    (SUMO, Kafka's tools): the one place outside settings objects that reads os.environ."""
    return {**os.environ, **extra}


@lru_cache(maxsize=1)
def get_settings() -> CitygridSettings:
    """The process-wide settings, read once."""
    return CitygridSettings()

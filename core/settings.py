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
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    chain: ChainSettings = ChainSettings()
    anchor: AnchorSettings = AnchorSettings()

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

"""Table state that cannot run code when read: sealed with the workers' key, checked before unpickling.

A pickle that runs a shell command is the attack; the marker file it would write must never appear.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from citygrid.errors import ConfigError
from citygrid.reading import Reading, sign_reading
from citygrid.records import Forecast
from citygrid.sealed import StateTampered, seal, unseal
from citygrid.settings import CitygridSettings, StreamSettings
from citygrid.signing import DeviceKey
from citygrid.stream.learning import decode_state, encode_state, learn_batch, new_state

T0 = 1_750_000_000_000
STATE_KEY = "unit-test-state-key-of-32-chars!"
S = StreamSettings(state_key=STATE_KEY)


class _Shell:
    """Unpickling this runs a shell command: what an attacker writes to a changelog topic."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _envelope(key: DeviceKey, seq: int) -> bytes:
    return sign_reading(Reading(device=key.device_id, seq=seq, ts_ms=T0 + seq * 900_000, kind="meter",
                                values={"p_kw": 1.0 + seq}), key).encode()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


@pytest.mark.parametrize("sealed_by", ["nobody", "another key"])
def test_a_pickle_with_a_shell_command_is_never_run_and_the_device_starts_afresh(
        tmp_path: Path, sealed_by: str) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps((1, _Shell(f"touch {marker}")))
    key = DeviceKey.generate()
    device = key.device_id.encode()
    stored = evil if sealed_by == "nobody" else seal(b"x" * 32, b"device-models/" + device, evil)
    refused = _sample("citygrid_stream_state_refused_total", table="device-models")
    resets = _sample("citygrid_stream_state_resets_total")
    out = learn_batch([(None, _envelope(key, 5))], lambda _k: stored, S)
    assert not marker.exists()
    assert _sample("citygrid_stream_state_refused_total", table="device-models") == refused + 1
    assert _sample("citygrid_stream_state_resets_total") == resets + 1
    # Learning went on, from scratch.
    assert Forecast.decode(out.forecasts[0][1]).n == 0
    assert decode_state(out.states[device], STATE_KEY.encode(), device).last_seq == 5


def test_a_state_sealed_for_one_device_is_refused_under_another() -> None:
    a, b = DeviceKey.generate(), DeviceKey.generate()
    state = new_state(Reading(device=a.device_id, seq=0, ts_ms=T0, kind="meter", values={"p_kw": 1.0}), S)
    raw = encode_state(state, STATE_KEY.encode(), a.device_id.encode())
    assert decode_state(raw, STATE_KEY.encode(), a.device_id.encode()).value_name == "p_kw"
    with pytest.raises(StateTampered):
        decode_state(raw, STATE_KEY.encode(), b.device_id.encode())
    with pytest.raises(StateTampered):  # one flipped byte of the payload
        decode_state(raw[:-1] + bytes([raw[-1] ^ 1]), STATE_KEY.encode(), a.device_id.encode())


def test_unseal_checks_the_tag_before_returning_anything() -> None:
    sealed = seal(b"k" * 32, b"ctx", b"payload")
    assert unseal(b"k" * 32, b"ctx", sealed) == b"payload"
    for key, ctx, blob in ((b"j" * 32, b"ctx", sealed), (b"k" * 32, b"other", sealed),
                           (b"k" * 32, b"ctx", sealed[:10]), (b"k" * 32, b"ctx", b"")):
        with pytest.raises(StateTampered):
            unseal(key, ctx, blob)


def test_no_state_key_no_learning_and_no_worker(settings: CitygridSettings) -> None:
    from citygrid.stream.app import make_app

    with pytest.raises(ConfigError, match="CITYGRID_STREAM__STATE_KEY"):
        learn_batch([], lambda _k: None, StreamSettings())
    with pytest.raises(ConfigError, match="CITYGRID_STREAM__STATE_KEY"):
        make_app(settings.model_copy(update={"stream": StreamSettings()}))
    with pytest.raises(ValueError, match="at least 32"):
        StreamSettings(state_key="short")
    assert STATE_KEY not in repr(S)

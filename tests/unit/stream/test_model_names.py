"""The model names settings accept are exactly the models the stream can build, so a wrong name fails at
start (settings validation) and never at the first reading."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from citygrid.settings import AnomalyDetector, ForecastModel, StreamSettings
from citygrid.stream.anomaly import DETECTORS
from citygrid.stream.forecasting import MODELS


def test_forecast_model_names_are_the_forecasters() -> None:
    assert set(typing.get_args(ForecastModel)) == set(MODELS)


def test_anomaly_detector_names_are_the_detectors() -> None:
    assert set(typing.get_args(AnomalyDetector)) == set(DETECTORS)


def test_an_unknown_model_name_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(ValidationError, match="river_linear"):
        StreamSettings(model="prophet")
    with pytest.raises(ValidationError, match="gaussian_residual"):
        StreamSettings(anomaly_detector="isolation_forest")

"""Resources built from ``PDM_*`` variables: typed by pydantic, a bad value names its variable."""

from __future__ import annotations

import pytest

from pdm_resources.landing_zone import S3LandingZone
from pdm_resources.telemetry_source import ENV_VARS, TelemetrySource


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_unset_and_empty_variables_keep_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PDM_SIM_MACHINES", "")
    assert TelemetrySource.from_env() == TelemetrySource()


def test_variables_are_parsed_into_the_fields_types(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PDM_SOURCE", "cmapss")
    clean_env.setenv("PDM_SIM_MACHINES", "12")
    clean_env.setenv("PDM_CMAPSS_CYCLES_AS_AGE", "0")
    clean_env.setenv("PDM_MAX_REJECTED_FRACTION", "0.05")
    source = TelemetrySource.from_env()
    assert (source.source, source.sim_machines) == ("cmapss", 12)
    assert (source.cmapss_cycles_as_age, source.max_rejected_fraction) == (False, 0.05)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PDM_SIM_MACHINES", "forty"), ("PDM_SOURCE", "csv"), ("PDM_CMAPSS_CYCLES_AS_AGE", "maybe")],
)
def test_a_bad_value_names_its_variable_and_value(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(
        ValueError, match=rf"TelemetrySource from the environment: {variable}='{value}'"
    ):
        TelemetrySource.from_env()


def test_the_s3_landing_zone_without_its_bucket_says_which_variable_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PDM_LANDING_S3_BUCKET", raising=False)
    with pytest.raises(ValueError, match="PDM_LANDING_S3_BUCKET is not set"):
        S3LandingZone.from_env()
    monkeypatch.setenv("PDM_LANDING_S3_BUCKET", "fleet-landing")
    monkeypatch.setenv("PDM_LANDING_S3_PREFIX", "")
    zone = S3LandingZone.from_env()
    assert (zone.bucket, zone.prefix) == ("fleet-landing", "landing")

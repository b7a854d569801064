from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from pdm_assets.feed_job import simulate_feed
from pdm_core import schema
from pdm_core.feed import (
    STATE_FILE,
    FeedConfig,
    batch_frame,
    feed_batches,
    next_batch,
    record_batches,
    run_feed,
    sensor_sd,
)
from pdm_core.landing import LandingContract, read_landed_file
from pdm_core.simulator import (
    NEW_REGIME,
    SENSORS,
    DriftSpec,
    SimulatorConfig,
    dataset_info,
    simulate,
)
from pdm_platform.cli.feed import main

# Small fleet: 5 machines x 20 readings per batch, 4 batches per continuous segment.
SMALL = FeedConfig(n_machines=5, steps_per_batch=20, seed=7, segment_steps=80)
NON_SENSOR = [*schema.LEADING_COLUMNS, *schema.TRAILING_COLUMNS]


def _batches(config: FeedConfig, first: int, n: int) -> dict[int, pd.DataFrame]:
    return dict(feed_batches(config, first, n))


def test_batch_shape_columns_and_first_cycle() -> None:
    frame = batch_frame(SMALL, 0)
    assert len(frame) == 5 * 20
    assert schema.SOURCE_SPLIT not in frame.columns
    assert {schema.RUL, schema.LABEL, schema.FAILURE_MODE} <= set(frame.columns)
    assert sorted(frame[schema.MACHINE].astype(str).unique()) == [f"M{i:03d}" for i in range(5)]
    first = frame.groupby(schema.MACHINE, observed=True)[schema.CYCLE].min()
    assert (first == 2001).all()  # continues after the source's 2000 readings, 1-based
    source_last = pd.Timestamp(SimulatorConfig().start) + pd.Timedelta(minutes=10 * 1999)
    assert frame[schema.TIMESTAMP].min() == source_last + pd.Timedelta(minutes=10)


def test_deterministic_and_independent_of_how_batches_are_requested() -> None:
    together = _batches(SMALL, 0, 6)
    for number in (0, 3, 4, 5):
        pd.testing.assert_frame_equal(batch_frame(SMALL, number), together[number])
        pd.testing.assert_frame_equal(batch_frame(SMALL, number), batch_frame(SMALL, number))
    pd.testing.assert_frame_equal(_batches(SMALL, 2, 3)[3], together[3])
    other_seed = batch_frame(FeedConfig(n_machines=5, steps_per_batch=20, seed=8), 0)
    assert not np.allclose(other_seed["vibration"], together[0]["vibration"])


def test_consecutive_batches_continue_each_machine() -> None:
    """The source, then batches of two segments: one continuous history per machine."""
    source = simulate(SimulatorConfig(n_machines=5, n_steps=2000, seed=7))  # SMALL's source
    batches = _batches(SMALL, 0, 8)  # segments 0 and 1 (batches 0-3, 4-7)
    full = pd.concat([source.drop(columns=[schema.SOURCE_SPLIT]), *batches.values()])
    full = full.sort_values([schema.MACHINE, schema.CYCLE])
    for _, machine in full.groupby(schema.MACHINE, observed=True):
        assert (np.diff(machine[schema.CYCLE]) == 1).all()
        gaps = np.diff(machine[schema.TIMESTAMP].to_numpy()).astype("timedelta64[m]")
        assert (gaps == np.timedelta64(10, "m")).all()
        # Inside a lifecycle the age grows by one per reading; a reset is a new component,
        # after a failure (rul 0) or a maintenance (rul beyond the horizon).
        age = machine[schema.TIME_SINCE_MAINTENANCE].to_numpy()
        rul = machine[schema.RUL].to_numpy()
        reset = age[1:] == 0
        assert ((np.diff(age) == 1) | reset).all()
        assert ((np.diff(rul) == -1) | reset).all()
        assert ((rul[:-1][reset] == 0) | (rul[:-1][reset] > SMALL.horizon)).all()
        mode = machine[schema.FAILURE_MODE].astype(str).to_numpy()
        assert ((mode[1:] == mode[:-1]) | reset).all()
    # At each boundary (source -> batch 0, batch 3 -> 4 between segments) the sensors step as
    # they do inside a batch: no new machine appears under an old id.
    inside = batches[1].groupby(schema.MACHINE, observed=True)["vibration"].diff().abs().median()
    for before, after in ((source, batches[0]), (batches[3], batches[4])):
        last = before.groupby(schema.MACHINE, observed=True).last()
        first = after.groupby(schema.MACHINE, observed=True).first()
        assert (first[schema.REGIME].astype(str) == last[schema.REGIME].astype(str)).all()
        assert (first["vibration"] - last["vibration"]).abs().median() < 3 * inside


def test_bias_drift_changes_only_the_biased_sensor() -> None:
    drift = DriftSpec(sensor_bias={"vibration": 0.7, "pressure": -0.3})
    clean = _batches(SMALL, 0, 4)
    drifted = _batches(replace(SMALL, drift=drift), 0, 4)
    for number in range(4):
        a, b = clean[number], drifted[number]
        pd.testing.assert_frame_equal(a[NON_SENSOR], b[NON_SENSOR])
        for name in SENSORS:
            if name in drift.sensor_bias:
                np.testing.assert_allclose(
                    b[name] - a[name], drift.sensor_bias[name], rtol=0, atol=1e-12
                )
            else:
                np.testing.assert_array_equal(a[name].to_numpy(), b[name].to_numpy())


def test_noise_drift_keeps_states_and_scales_the_noise() -> None:
    clean = batch_frame(SMALL, 1)
    double = batch_frame(replace(SMALL, drift=DriftSpec(noise_scale=2.0)), 1)
    triple = batch_frame(replace(SMALL, drift=DriftSpec(noise_scale=3.0)), 1)
    pd.testing.assert_frame_equal(clean[NON_SENSOR], triple[NON_SENSOR])
    # Same draws: with noise e on the clean reading, x2 adds e and x3 adds 2e.
    for name in SENSORS:
        added = (double[name] - clean[name]).to_numpy()
        assert added.std() > 0
        np.testing.assert_allclose(triple[name] - clean[name], 2 * added, rtol=1e-6, atol=1e-9)


def test_new_regime_keeps_lifecycles() -> None:
    clean = _batches(SMALL, 0, 4)
    drifted = _batches(replace(SMALL, drift=DriftSpec(new_regime=True)), 0, 4)
    for number in range(4):
        for column in (schema.RUL, schema.TIME_SINCE_MAINTENANCE, schema.CYCLE):
            np.testing.assert_array_equal(clean[number][column], drifted[number][column])


def test_bias_sd_is_converted_with_the_reference_sd() -> None:
    sd = sensor_sd(SMALL)
    full = simulate(SimulatorConfig(n_machines=5, n_steps=2000, seed=7, horizon=30))
    for name in SENSORS:
        assert sd[name] == pytest.approx(full[name].std(ddof=1), rel=1e-12)
    config = replace(SMALL, bias_sd={"temperature": 0.5})
    assert config.effective_drift().sensor_bias == pytest.approx(
        {"temperature": 0.5 * sd["temperature"]}
    )
    both = replace(
        SMALL, bias_sd={"temperature": 1.0}, drift=DriftSpec(sensor_bias={"temperature": 2.0})
    )
    assert both.effective_drift().sensor_bias["temperature"] == pytest.approx(
        2.0 + sd["temperature"]
    )
    diff = batch_frame(config, 0)["temperature"] - batch_frame(SMALL, 0)["temperature"]
    np.testing.assert_allclose(diff, 0.5 * sd["temperature"], atol=1e-12)
    with pytest.raises(ValueError, match="unknown sensors"):
        FeedConfig(bias_sd={"humidity": 1.0})


def test_drift_from_batch_boundary() -> None:
    config = replace(SMALL, bias_sd={"vibration": 2.0}, drift_from_batch=2)
    clean = _batches(SMALL, 0, 6)
    mixed = _batches(config, 0, 6)  # batch 2 is mid-segment, batches 4-5 the next segment
    for number in range(6):
        same = np.array_equal(clean[number]["vibration"], mixed[number]["vibration"])
        assert same == (number < 2), number
        pd.testing.assert_frame_equal(clean[number][NON_SENSOR], mixed[number][NON_SENSOR])
    assert config.describe_drift() == "bias vibration +2 sd from batch 2"


def test_new_regime_only_in_drifted_batches() -> None:
    config = replace(SMALL, drift=DriftSpec(new_regime=True), drift_from_batch=4)
    batches = _batches(config, 0, 12)
    for number, frame in batches.items():
        regimes = set(frame[schema.REGIME].astype(str))
        if number < 4:
            assert NEW_REGIME not in regimes
    assert any(
        NEW_REGIME in set(f[schema.REGIME].astype(str)) for n, f in batches.items() if n >= 4
    )


def test_state_continues_numbering_and_files_pass_the_contract(tmp_path: Path) -> None:
    root = tmp_path / "landing"
    incoming = root / "incoming"
    assert next_batch(root) == 0
    seen: list[tuple[int, str, int]] = []
    first = run_feed(SMALL, incoming, root, 2, on_batch=lambda i, p, r: seen.append((i, p.name, r)))
    second = run_feed(SMALL, incoming, root, 3)
    assert [p.name for p in first + second] == [f"feed-{i:06d}.parquet" for i in range(5)]
    assert seen == [(0, "feed-000000.parquet", 100), (1, "feed-000001.parquet", 100)]
    assert next_batch(root) == 5
    assert json.loads((root / STATE_FILE).read_text()) == {"next_batch": 5}
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    contract = LandingContract.from_info(dataset_info(SimulatorConfig()))
    for number, path in enumerate(first + second):
        landed = read_landed_file(path, contract)
        assert len(landed.rejects) == 0 and len(landed.frame) == 100
        expected = batch_frame(SMALL, number)
        np.testing.assert_array_equal(landed.frame[schema.CYCLE], expected[schema.CYCLE])
        np.testing.assert_array_equal(landed.frame["temperature"], expected["temperature"])
    record_batches(root, 9)
    assert next_batch(root) == 9
    (root / STATE_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="unreadable feed state"):
        next_batch(root)


def test_cli_writes_files_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "landing"
    args = ["--machines", "5", "--steps-per-batch", "20", "--landing-dir", str(root)]
    assert main([*args, "--batches", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "feed-000000.parquet: 100 readings" in out
    assert "wrote 2 file(s), 200 readings of 5 machines (batches 0-1); drift: no drift" in out
    assert str(root) in out
    assert main([*args, "--bias", "vibration=0.5", "--new-regime", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "drift: bias vibration +0.5 sd, new regime 'overload' from batch 2" in out
    assert sorted(p.name for p in (root / "incoming").iterdir()) == [
        "feed-000000.parquet", "feed-000001.parquet", "feed-000002.parquet",
    ]  # fmt: skip
    # The drifted batch is the same batch of the drifted feed, generated on its own.
    config = FeedConfig(
        n_machines=5, steps_per_batch=20, bias_sd={"vibration": 0.5},
        drift=DriftSpec(new_regime=True), drift_from_batch=2,
    )  # fmt: skip
    landed = pd.read_parquet(root / "incoming" / "feed-000002.parquet")
    np.testing.assert_array_equal(landed["vibration"], batch_frame(config, 2)["vibration"])


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--landing-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--bias", "humidity=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown sensor 'humidity'" in err and all(name in err for name in SENSORS)
    for bad in (["--batches", "0"], ["--machines", "-1"], ["--noise-scale", "0"],
                ["--degradation-rate", "nan"], ["--bias", "vibration"],
                ["--drift-from-batch", "3"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *bad])
        assert exit_info.value.code == 2, bad
    assert not (tmp_path / "incoming").exists()


def test_cli_default_landing_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PDM_LANDING_DIR", raising=False)
    args = ["--machines", "2", "--steps-per-batch", "5", "--no-progress"]
    assert main(args) == 0
    assert (tmp_path / "home" / "landing" / "incoming" / "feed-000000.parquet").exists()
    monkeypatch.setenv("PDM_LANDING_DIR", str(tmp_path / "zone"))
    assert main(args) == 0
    assert (tmp_path / "zone" / "incoming" / "feed-000000.parquet").exists()


def test_dagster_job_writes_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDM_HOME", str(tmp_path))
    monkeypatch.delenv("PDM_LANDING_DIR", raising=False)
    run_config = {
        "ops": {
            "write_feed_batches": {
                "config": {
                    "batches": 2, "steps_per_batch": 20, "machines": 5,
                    "bias_sd": {"vibration": 0.5},
                }
            }
        }
    }  # fmt: skip
    with dg.DagsterInstance.ephemeral() as instance:
        result = simulate_feed.execute_in_process(run_config=run_config, instance=instance)
    assert result.success
    written = result.output_for_node("write_feed_batches")
    assert [Path(p).name for p in written] == ["feed-000000.parquet", "feed-000001.parquet"]
    assert all(Path(p).parent == tmp_path.resolve() / "landing" / "incoming" for p in written)
    assert next_batch(tmp_path / "landing") == 2
    config = FeedConfig(n_machines=5, steps_per_batch=20, bias_sd={"vibration": 0.5})
    landed = pd.read_parquet(written[1])
    np.testing.assert_array_equal(landed["vibration"], batch_frame(config, 1)["vibration"])
    # A second run with defaults for everything else continues the numbering.
    minimal = {"ops": {"write_feed_batches": {"config": {"steps_per_batch": 20, "machines": 5}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        again = simulate_feed.execute_in_process(run_config=minimal, instance=instance)
    assert [Path(p).name for p in again.output_for_node("write_feed_batches")] == [
        "feed-000002.parquet"
    ]
    bad = {"ops": {"write_feed_batches": {"config": {"bias_sd": {"humidity": 1.0}}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        failed = simulate_feed.execute_in_process(
            run_config=bad, instance=instance, raise_on_error=False
        )
    assert not failed.success
    assert next_batch(tmp_path / "landing") == 3

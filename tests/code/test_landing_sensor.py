"""Tests for the landing zone resource and the landing-zone sensor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from pdm_core import schema
from pdm_core.landing import (
    BATCH_ID,
    LandingContract,
    batch_id,
    read_landed_file,
    split_against_existing,
    write_batch,
)
from pdm_core.names import LANDED_AT_TAG
from pdm_core.simulator import SimulatorConfig, dataset_info, simulate
from pdm_resources.landing_zone import LandedFile, LocalLandingZone
from sensors_schedules.landing_sensor import (
    LANDING_INTERVAL_SECONDS,
    MAX_FILES_PER_TICK,
    landing_zone_sensor,
    plan_tick,
)

# ---------------------------------------------------------------------- plan_tick (pure)


class FakeHasher:
    """``batch_of`` that records which files it was asked to hash."""

    def __init__(self, ids: dict[str, str] | None = None) -> None:
        self.ids = ids or {}
        self.calls: list[str] = []

    def __call__(self, name: str) -> str:
        self.calls.append(name)
        return self.ids.get(name, f"{name}-id")


def landed(name: str, size: int = 100, mtime_ns: int = 1) -> LandedFile:
    return LandedFile(name, size, mtime_ns)


def test_plan_tick_requests_new_files_in_order() -> None:
    files = [landed("a.csv", mtime_ns=1), landed("b.parquet", mtime_ns=2)]
    hasher = FakeHasher()
    decision = plan_tick(files, {}, hasher)
    assert decision.batches == [("a.csv", "a.csv-id"), ("b.parquet", "b.parquet-id")]
    assert decision.cursor == {
        "a.csv": ["100:1", "a.csv-id"],
        "b.parquet": ["100:2", "b.parquet-id"],
    }
    assert decision.deferred == 0
    assert hasher.calls == ["a.csv", "b.parquet"]


def test_plan_tick_does_not_rerequest_known_unchanged_files() -> None:
    files = [landed("a.csv"), landed("b.csv")]
    cursor = {"a.csv": ["100:1", "a-old"]}
    hasher = FakeHasher()
    decision = plan_tick(files, cursor, hasher)
    assert decision.batches == [("b.csv", "b.csv-id")]
    assert decision.cursor["a.csv"] == ["100:1", "a-old"]
    assert hasher.calls == ["b.csv"]  # the known file is not even read again


def test_plan_tick_requests_a_rewritten_file_again() -> None:
    cursor = {"a.csv": ["100:1", "a-old"]}
    hasher = FakeHasher({"a.csv": "a-new"})
    decision = plan_tick([landed("a.csv", size=120, mtime_ns=5)], cursor, hasher)
    assert decision.batches == [("a.csv", "a-new")]
    assert decision.cursor == {"a.csv": ["120:5", "a-new"]}


def test_plan_tick_drops_files_that_left_incoming() -> None:
    cursor = {"gone.csv": ["1:1", "gone"], "a.csv": ["100:1", "a"]}
    decision = plan_tick([landed("a.csv")], cursor, FakeHasher())
    assert decision.batches == []
    assert decision.cursor == {"a.csv": ["100:1", "a"]}


def test_plan_tick_limit_defers_the_rest_to_later_ticks() -> None:
    files = [landed(f"f{i}.csv", mtime_ns=i) for i in range(5)]
    hasher = FakeHasher()
    first = plan_tick(files, {}, hasher, limit=2)
    assert [name for name, _ in first.batches] == ["f0.csv", "f1.csv"]
    assert first.deferred == 3
    assert set(first.cursor) == {"f0.csv", "f1.csv"}  # deferred files stay new
    assert hasher.calls == ["f0.csv", "f1.csv"]

    second = plan_tick(files, first.cursor, hasher, limit=2)
    assert [name for name, _ in second.batches] == ["f2.csv", "f3.csv"]
    assert second.deferred == 1
    third = plan_tick(files, second.cursor, hasher, limit=2)
    assert [name for name, _ in third.batches] == ["f4.csv"]
    assert third.deferred == 0
    assert set(third.cursor) == {f.name for f in files}
    assert plan_tick(files, third.cursor, hasher, limit=2).batches == []


def test_default_limit_is_applied() -> None:
    files = [landed(f"f{i:03d}.csv", mtime_ns=i) for i in range(MAX_FILES_PER_TICK + 3)]
    decision = plan_tick(files, {}, FakeHasher())
    assert len(decision.batches) == MAX_FILES_PER_TICK
    assert decision.deferred == 3


# ---------------------------------------------------------------------- LocalLandingZone


def readings(n_steps: int = 10, seed: int = 1, first_step: int = 0) -> pd.DataFrame:
    config = SimulatorConfig(n_machines=2, n_steps=n_steps, seed=seed, first_step=first_step)
    return simulate(config).drop(columns=[schema.SOURCE_SPLIT])


def make_zone(tmp_path: Path) -> LocalLandingZone:
    return LocalLandingZone(root=str(tmp_path / "landing"))


def test_zone_creates_its_directories(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    assert zone.incoming == tmp_path / "landing" / "incoming"
    assert zone.incoming.is_dir() and zone.archive_dir.is_dir() and zone.quarantine_dir.is_dir()
    assert str(tmp_path / "landing") in zone.describe()


def test_list_incoming_skips_hidden_and_sorts_oldest_first(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    incoming = zone.incoming
    for name, mtime in (("newest.csv", 3), ("oldest.parquet", 1), ("middle.csv", 2)):
        (incoming / name).write_text("x")
        os.utime(incoming / name, ns=(mtime * 10**9, mtime * 10**9))
    (incoming / ".partial.parquet.part").write_text("x")
    (incoming / ".hidden.csv").write_text("x")
    (incoming / "notes.txt").write_text("x")
    (incoming / "folder.csv").mkdir()
    files = zone.list_incoming()
    assert [f.name for f in files] == ["oldest.parquet", "middle.csv", "newest.csv"]
    assert files[0].mtime_ns == 10**9
    assert files[0].size == 1
    assert files[0].fingerprint == f"1:{10**9}"


def test_locate_finds_incoming_then_archived_file(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    path = write_batch(readings(), zone.incoming, "feed-1")
    write_batch(readings(seed=2), zone.incoming, "feed-10")  # shares the stem prefix
    batch = zone.batch_of(path.name)
    assert batch == batch_id(path.name, path.read_bytes())
    assert zone.locate(batch) == path

    archived = zone.archive_file(path, batch)
    assert archived == zone.archive_dir / f"{batch}.parquet"
    assert archived.is_file() and not path.exists()
    assert zone.locate(batch) == archived
    assert zone.archive_file(archived, batch) == archived  # already there: no-op
    assert archived.is_file()


def test_quarantine_records_the_reason_and_moves_the_file(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    path = write_batch(readings(), zone.incoming, "feed-2")
    batch = zone.batch_of(path.name)
    target = zone.quarantine_file(path, batch, "bad.csv: missing column")
    assert target == zone.quarantine_dir / f"{batch}.parquet"
    assert target.is_file() and not path.exists()
    record = json.loads((zone.quarantine_dir / f"{batch}.reason.json").read_text())
    assert record["reason"] == "bad.csv: missing column"
    assert record["file"] == "feed-2.parquet"
    assert record["batch_id"] == batch
    assert record["quarantined_at"]

    with pytest.raises(FileNotFoundError) as caught:
        zone.locate(batch)
    assert "quarantined" in str(caught.value)
    assert batch in str(caught.value)


def test_locate_unknown_batch_raises(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    write_batch(readings(), zone.incoming, "feed-3")
    with pytest.raises(FileNotFoundError) as caught:
        zone.locate("feed-3-000000000000")
    assert "feed-3-000000000000" in str(caught.value)
    assert "quarantined" not in str(caught.value)


def test_write_rejected_rows(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    rejects = pd.DataFrame(
        [("a.csv", 3, "vibration", "abc", "not a finite number")],
        columns=list(schema.REJECT_COLUMNS),
    )
    path = zone.write_rejected_rows("a-123", rejects)
    assert path == str(zone.quarantine_dir / "a-123.rejected-rows.csv")
    assert pd.read_csv(path).to_dict("records") == rejects.to_dict("records")


# ---------------------------------------------------------------------- the sensor


def evaluate(zone: LocalLandingZone, cursor: str | None) -> dg.SensorResult:
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"landing_zone": zone}
        )
        result = landing_zone_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def two_files(zone: LocalLandingZone) -> dict[str, str]:
    """Writes two batches; returns file name -> expected batch id."""
    paths = [
        write_batch(readings(first_step=0), zone.incoming, "feed-000001"),
        write_batch(readings(first_step=10), zone.incoming, "feed-000002"),
    ]
    os.utime(paths[0], ns=(10**9, 10**9))
    os.utime(paths[1], ns=(2 * 10**9, 2 * 10**9))
    return {p.name: batch_id(p.name, p.read_bytes()) for p in paths}


def test_sensor_requests_one_run_per_new_file(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    expected = two_files(zone)
    result = evaluate(zone, None)

    assert result.skip_reason is None
    requests = result.run_requests or []
    assert len(requests) == 2
    keys = list(expected.values())
    assert [r.run_key for r in requests] == keys
    assert [r.partition_key for r in requests] == keys
    assert [r.tags["pdm/landed_file"] for r in requests] == list(expected)
    assert {r.tags["pdm/trigger"] for r in requests} == {"landing_zone"}
    # when each file was written (two_files sets the modification times to 1 s and 2 s)
    assert [r.tags[LANDED_AT_TAG] for r in requests] == [
        "1970-01-01T00:00:01+00:00",
        "1970-01-01T00:00:02+00:00",
    ]

    (add,) = result.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert add.partitions_def_name == "telemetry_batches"
    assert list(add.partition_keys) == keys

    cursor = json.loads(result.cursor or "")
    assert {name: entry[1] for name, entry in cursor["files"].items()} == expected


def test_sensor_is_deterministic_on_a_fresh_cursor(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    two_files(zone)
    first = [r.run_key for r in evaluate(zone, None).run_requests or []]
    again = [r.run_key for r in evaluate(zone, None).run_requests or []]
    assert first == again and len(first) == 2


def test_second_tick_requests_nothing(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    two_files(zone)
    first = evaluate(zone, None)
    second = evaluate(zone, first.cursor)
    assert not second.run_requests
    assert not second.dynamic_partitions_requests
    assert second.skip_reason is not None
    assert "2 file(s) in incoming already requested" in second.skip_reason.skip_message
    assert json.loads(second.cursor or "") == json.loads(first.cursor or "")


def test_sensor_skips_an_empty_zone(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    result = evaluate(zone, None)
    assert not result.run_requests
    assert result.skip_reason is not None
    assert "no new file" in result.skip_reason.skip_message
    assert json.loads(result.cursor or "") == {"files": {}}


def test_sensor_forgets_handled_files_and_picks_up_new_ones(tmp_path: Path) -> None:
    zone = make_zone(tmp_path)
    expected = two_files(zone)
    first = evaluate(zone, None)
    for name, batch in expected.items():
        zone.archive_file(zone.incoming / name, batch)
    third = write_batch(readings(first_step=20), zone.incoming, "feed-000003")
    result = evaluate(zone, first.cursor)
    (request,) = result.run_requests or []
    assert request.run_key == batch_id(third.name, third.read_bytes())
    assert set(json.loads(result.cursor or "")["files"]) == {"feed-000003.parquet"}


def test_same_bytes_same_name_get_the_same_run_key(tmp_path: Path) -> None:
    """Redelivering a file (same name, same bytes) after it was archived re-requests the same
    run key, which Dagster deduplicates for the sensor."""
    zone = make_zone(tmp_path)
    path = write_batch(readings(), zone.incoming, "feed-9")
    (first,) = evaluate(zone, None).run_requests or []
    zone.archive_file(path, first.run_key or "")
    write_batch(readings(), zone.incoming, "feed-9")
    (again,) = evaluate(zone, None).run_requests or []
    assert again.run_key == first.run_key


def test_same_bytes_under_another_name_share_the_content_hash(tmp_path: Path) -> None:
    """The batch id joins the file stem and the content hash, so the same bytes under a second
    name get another run key; the ingestion then counts its rows as redeliveries."""
    zone = make_zone(tmp_path)
    frame = readings()
    first = write_batch(frame, zone.incoming, "feed-a")
    second = write_batch(frame, zone.incoming, "feed-b")
    assert first.read_bytes() == second.read_bytes()
    result = evaluate(zone, None)
    keys = [r.run_key or "" for r in result.run_requests or []]
    assert len(keys) == 2
    assert keys[0].rsplit("-", 1)[1] == keys[1].rsplit("-", 1)[1]
    # Row-level dedup catches the copy at ingestion.
    contract = LandingContract.from_info(dataset_info(SimulatorConfig()))
    rows = read_landed_file(second, contract).frame
    existing = read_landed_file(first, contract).frame.assign(**{BATCH_ID: keys[0]})
    new, conflicts, redelivered = split_against_existing(rows, existing, contract.numeric)
    assert new.empty and conflicts.empty
    assert redelivered == len(frame)


def test_sensor_definition() -> None:
    assert landing_zone_sensor.job_name == "ingest_telemetry"
    assert landing_zone_sensor.minimum_interval_seconds == LANDING_INTERVAL_SECONDS == 4
    assert landing_zone_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert landing_zone_sensor.required_resource_keys == {"landing_zone"}

"""METRICS_FILE: written after every real pass (CLI subprocess) in the Prometheus text format,
parsed back with the Prometheus client's own parser; atomic, and patient with a Windows
collector holding the old file open."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bobosync import metrics
from bobosync.metrics import write_atomically
from bobosync.simulator import AtHocSimulator, export_row, write_bobo_file
from tests.conftest import TLSCerts
from tests.harness import run_cli, sim_env_file

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(path: Path) -> tuple[Samples, dict[str, str]]:
    """Every sample, keyed by (name, sorted labels); and each family's type."""
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_pass_writes_the_figures_and_the_health(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    metrics_file = tmp_path / "textfile" / "bobosync.prom"
    metrics_file.parent.mkdir()
    env = sim_env_file(
        simulator, root, tls_certs.ca_pem, {"METRICS_FILE": str(metrics_file), "MOVE_PROCESSED_FILES": "true"}
    )
    now = datetime.now().replace(microsecond=0)
    csv = root / "crown_files"
    write_bobo_file(
        csv,
        [
            export_row("BON", "00001", now - timedelta(minutes=3)),
            export_row("BON", "00002", now - timedelta(minutes=2)),
            export_row("BOF", "00001", now - timedelta(minutes=1)),
        ],
        now,
    )
    (csv / "BOBO_corrupt_output.csv").write_bytes(b"\x00\x01binary")

    result = run_cli(env)
    assert result.returncode == 0, result.stderr
    samples, types = parse(metrics_file)
    assert set(types.values()) == {"gauge"}
    assert value(samples, "bobosync_last_pass_status", status="ok") == 1
    assert value(samples, "bobosync_last_pass_status", status="failed") == 0
    assert value(samples, "bobosync_last_pass_exit_code") == 0
    assert value(samples, "bobosync_last_pass_files") == 2
    assert value(samples, "bobosync_last_pass_files_done") == 1
    assert value(samples, "bobosync_last_pass_files_failed") == 1
    assert value(samples, "bobosync_last_pass_rows") == 3
    assert value(samples, "bobosync_last_pass_updates_sent") == 2
    assert value(samples, "bobosync_last_pass_applied") == 2
    assert value(samples, "bobosync_last_pass_superseded") == 1
    assert value(samples, "bobosync_files_failed") == 1
    assert value(samples, "bobosync_files_waiting") == 0
    assert value(samples, "bobosync_health", level="warning") == 1  # the failed file
    assert value(samples, "bobosync_health_code") == 1
    assert value(samples, "bobosync_worker_mappings") == 50
    finished = value(samples, "bobosync_last_pass_timestamp_seconds")
    assert abs(finished - datetime.now().timestamp()) < 60
    assert 0 <= value(samples, "bobosync_last_pass_duration_seconds") < 60
    assert 0 <= value(samples, "bobosync_seconds_since_last_success", run="mapping_sync") < 60
    assert value(samples, "bobosync_last_success_timestamp_seconds", run="cleanup") <= finished
    # The mapping sync's listing of every user served a reconcile in the same pass.
    assert 0 <= value(samples, "bobosync_seconds_since_last_success", run="reconcile") < 60
    assert value(samples, "bobosync_info", org="SIMORG", version="2.0.0") == 1
    assert [p.name for p in metrics_file.parent.iterdir()] == ["bobosync.prom"]  # no temporary file left

    # AtHoc down: the pass fails, and the file says so.
    simulator.fail_next(10_000, status=503)
    assert run_cli(env).returncode == 1
    samples, _ = parse(metrics_file)
    assert value(samples, "bobosync_last_pass_status", status="failed") == 1
    assert value(samples, "bobosync_last_pass_exit_code") == 1
    assert value(samples, "bobosync_health", level="unhealthy") == 1
    assert value(samples, "bobosync_health_code") == 2
    assert value(samples, "bobosync_last_pass_timestamp_seconds") >= finished


def test_a_dry_run_writes_no_metrics_and_a_missing_folder_is_a_warning(
    simulator: AtHocSimulator, tls_certs: TLSCerts, tmp_path: Path
) -> None:
    metrics_file = tmp_path / "missing-folder" / "bobosync.prom"
    env = sim_env_file(simulator, tmp_path / "site", tls_certs.ca_pem, {"METRICS_FILE": str(metrics_file)})
    assert run_cli(env, "--dry-run").returncode == 0
    result = run_cli(env)
    assert result.returncode == 0  # the pass is not failed by its metrics
    assert f"bobosync.monitoring: METRICS_FILE {metrics_file} not written: No such file or directory" in result.stderr
    assert not metrics_file.parent.exists()


def test_the_file_is_replaced_in_one_step_even_when_windows_refuses_at_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "bobosync.prom"
    target.write_text("# old\n", encoding="utf-8")
    refusals: list[tuple[str, str]] = []  # (what is in the new file, what is in place meanwhile)
    real_replace = os.replace

    def sharing_violation(src: str, dst: str) -> None:
        if len(refusals) < 2:  # the collector holds the old file open for a moment
            refusals.append((Path(src).read_text(encoding="utf-8"), target.read_text(encoding="utf-8")))
            raise PermissionError(13, "The process cannot access the file because it is being used")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", sharing_violation)
    monkeypatch.setattr(metrics, "REPLACE_PAUSE_SECONDS", 0.0)
    write_atomically(target, "bobosync_up 1\n")
    assert refusals == [("bobosync_up 1\n", "# old\n")] * 2
    assert target.read_bytes() == b"bobosync_up 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bobosync.prom"]

    refusals.clear()
    monkeypatch.setattr(metrics, "REPLACE_ATTEMPTS", 2)
    with pytest.raises(PermissionError):
        write_atomically(target, "bobosync_up 2\n")
    assert target.read_bytes() == b"bobosync_up 1\n"  # the old file stands, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bobosync.prom"]  # no temporary file left


def test_labels_and_help_are_escaped_as_the_format_requires() -> None:
    writer = metrics._Writer()
    writer.gauge("x", "help with \\ and\nnewline", [({"org": 'quo"te\\back\nline'}, 1.5)])
    text = writer.text()
    [family] = list(text_string_to_metric_families(text))
    assert family.documentation == "help with \\ and\nnewline"
    assert family.samples[0].labels == {"org": 'quo"te\\back\nline'} and family.samples[0].value == 1.5

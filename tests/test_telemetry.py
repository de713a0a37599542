"""Prometheus metrics over real HTTP: prometheus_client's exposition, on loopback by default."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from importlib.metadata import version

from procs import CLI, Consumer, show, stop_all, worker_env
from services import free_port, wait_until

from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import telemetry
from optiinfra_tui.worker.runtime import Runtime

# A second loopback address: a server bound to 127.0.0.1 alone refuses it, one on 0.0.0.0 doesn't.
OTHER_LOOPBACK = "127.0.0.2"


def scrape(host: str, port: int) -> str | None:
    """The /metrics text, or None when nothing listens there."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return resp.read().decode()
    except OSError:
        return None


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels}` (labels in any order: the library's choice)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_in_process_server_exposes_runs_build_and_process_metrics_on_loopback_only(
        make_env, monkeypatch):
    monkeypatch.setattr(telemetry, "_record", None)  # this test's registry only
    rt = Runtime(load_settings(make_env()))
    rt.history()
    port = free_port()
    server = telemetry.serve(rt, port)
    try:
        telemetry.record_run("vultr", "success", 1.5)
        telemetry.record_run('we"ird\nprovider', "failed", 7)
        text = scrape("127.0.0.1", port)
        refused = scrape(OTHER_LOOPBACK, port)
    finally:
        server.shutdown()
        server.server_close()
    assert text is not None
    assert refused is None  # bound to 127.0.0.1, not every interface
    assert f'optiinfra_build_info{{version="{version("optiinfra-tui")}"}} 1.0' in text
    assert "\nprocess_resident_memory_bytes " in text
    assert "\nprocess_cpu_seconds_total " in text
    assert "\npython_info{" in text
    # The metric names of the hand-written exposition it replaces.
    assert 'optiinfra_runs_total{provider="vultr",status="success"} 1.0' in text
    bucket = "optiinfra_run_duration_seconds_bucket"
    assert value(text, bucket, provider="vultr", le="1.0") == 0
    assert value(text, bucket, provider="vultr", le="2.5") == 1
    assert value(text, bucket, provider="vultr", le="+Inf") == 1
    assert 'optiinfra_run_duration_seconds_sum{provider="vultr"} 1.5' in text
    assert value(text, "optiinfra_runs_total", provider='we"ird\nprovider', status="failed") == 1
    assert "optiinfra_queue_depth 0.0" in text
    assert 'optiinfra_workers{state="idle"} 0.0' in text
    assert 'optiinfra_backend_up{backend="queue"} 1.0' in text
    assert 'optiinfra_backend_up{backend="history"} 1.0' in text


def test_headless_metrics_host_chooses_the_address(tmp_path):
    (tmp_path / "none.toml").write_text("schedules = []\n")
    env = worker_env(os.environ, OPTIINFRA_CONFIG=tmp_path / "none.toml")
    port = free_port()
    consumer = Consumer("headless", env, tmp_path / "home", workers=1,
                        extra=("--metrics-port", str(port), "--metrics-host", OTHER_LOOPBACK))
    try:
        consumer.start()
        text = wait_until(lambda: scrape(OTHER_LOOPBACK, port), 60)
        assert text and "optiinfra_build_info{" in text, consumer.printed()
        assert scrape("127.0.0.1", port) is None
    finally:
        stop_all([consumer])
        show([consumer])
    assert consumer.proc.returncode == 0


def test_metrics_host_without_a_port_is_a_usage_error(tmp_path):
    env = worker_env(os.environ, OPTIINFRA_HOME=tmp_path / "home")
    r = subprocess.run(CLI + ["--headless", "--metrics-host", "0.0.0.0"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "--metrics-host needs --metrics-port" in r.stderr
    assert "Traceback" not in r.stderr


def test_processes_that_serve_no_metrics_never_import_prometheus_client():
    code = ("import sys; from optiinfra_tui import cli; "
            "from optiinfra_tui.worker import collection, telemetry; "
            "telemetry.record_run('vultr', 'success', 1.0); "
            "print('prometheus_client' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "False", r.stderr

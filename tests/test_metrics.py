"""The Prometheus exporter (procoord[metrics]) over real workers."""

from __future__ import annotations

import urllib.request

import pytest

from procoord import BlockingCoordinator, Coordinator, Executor, TaskPrefs, TaskProcessError

from . import _funcs, _stream_funcs
from .conftest import DEADLOCK_TIMEOUT

prometheus_client = pytest.importorskip("prometheus_client")
from procoord.metrics import PrometheusExporter  # noqa: E402 - after the importorskip


def scrape(registry: object) -> str:
    return str(prometheus_client.generate_latest(registry).decode())


async def test_exporter_publishes_per_worker_gauges_and_counters(coord: Coordinator) -> None:
    """Test the per-worker gauges and task counters from a refreshed snapshot."""
    registry = prometheus_client.CollectorRegistry()
    exporter = PrometheusExporter(coord, registry=registry)
    await coord.add_worker("w1", _funcs.double)
    await coord.add_worker("w2", _funcs.raiser)
    for i in range(3):
        await coord.call(i, TaskPrefs.Required("w1"))
    with pytest.raises(TaskProcessError):
        await coord.call("value", TaskPrefs.Required("w2"))
    await coord.add_worker("s", _stream_funcs.blobs)
    assert len([p async for p in coord.stream(2, TaskPrefs.Required("s"))]) == 2
    assert 'procoord_worker_tasks_completed_total{worker="w1"}' not in scrape(registry)  # no snapshot yet
    await exporter.refresh()
    text = scrape(registry)
    assert 'procoord_worker_tasks_completed_total{worker="w1"} 3.0' in text
    assert 'procoord_worker_tasks_failed_total{worker="w2"} 1.0' in text
    assert 'procoord_worker_restarts_total{worker="w1"} 0.0' in text
    assert 'procoord_worker_recycles_total{worker="w1"} 0.0' in text
    assert 'procoord_worker_retries_total{worker="w1"} 0.0' in text
    assert 'procoord_worker_parts_streamed_total{worker="s"} 2.0' in text
    assert 'procoord_worker_queue_length{worker="w1"} 0.0' in text
    assert 'procoord_worker_state{state="idle",worker="w1"} 1.0' in text
    assert 'procoord_worker_state{state="busy",worker="w1"} 0.0' in text
    assert 'procoord_worker_rss_bytes{worker="w2"}' in text
    assert 'procoord_worker_task_seconds_ewma{worker="w1"}' in text
    assert "procoord_workers 3.0" in text
    assert "procoord_tasks_pending 0.0" in text and "procoord_tasks_waiting 0.0" in text
    exporter.unregister()
    assert "procoord_workers" not in scrape(registry)


async def test_started_exporter_refreshes_at_once(coord: Coordinator) -> None:
    """Test `async with exporter`: a snapshot at start, and the refresh task stops on exit."""
    registry = prometheus_client.CollectorRegistry()
    await coord.add_worker("w", _funcs.double)
    await coord.call(1)
    async with PrometheusExporter(coord, registry=registry, interval=0.05) as exporter:
        assert 'procoord_worker_tasks_completed_total{worker="w"} 1.0' in scrape(registry)
        assert exporter._task is not None and not exporter._task.done()
    assert exporter._task is None


def test_blocking_coordinator_and_executor_are_read_at_each_scrape_over_http() -> None:
    """Test the live read of a BlockingCoordinator and an Executor, scraped over HTTP."""
    registry = prometheus_client.CollectorRegistry()
    with BlockingCoordinator() as bc, Executor(max_workers=1) as ex:
        PrometheusExporter(bc, registry=registry, namespace="jobs")
        PrometheusExporter(ex, registry=registry, namespace="pool")
        bc.add_worker("b", _funcs.double)
        bc.call(2)
        assert ex.submit(pow, 2, 3).result(DEADLOCK_TIMEOUT) == 8
        server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            with urllib.request.urlopen(url, timeout=DEADLOCK_TIMEOUT) as response:
                text = response.read().decode()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(DEADLOCK_TIMEOUT)
    assert 'jobs_worker_tasks_completed_total{worker="b"} 1.0' in text
    assert 'pool_worker_tasks_completed_total{worker="executor-0"} 1.0' in text


def test_exporter_refuses_what_is_not_a_coordinator() -> None:
    """Test the TypeError naming what the exporter takes."""
    with pytest.raises(TypeError, match="takes a Coordinator"):
        PrometheusExporter(object(), registry=None)

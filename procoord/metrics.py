"""Prometheus metrics of a coordinator's workers (``pip install 'procoord[metrics]'``).

:class:`PrometheusExporter` is a prometheus-client collector: registered on a registry
(the default one unless told otherwise), it publishes per-worker gauges (queue, in
flight, task time, CPU, memory, uptime, state) and counters (tasks completed and failed,
restarts, streamed parts, recycles, retries), plus the coordinator's pending and waiting
tasks. Serve them as usual, e.g. ``prometheus_client.start_http_server(9100)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable, Mapping
from types import TracebackType
from typing import get_args

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "procoord.metrics needs prometheus-client: pip install 'procoord[metrics]'", name=exc.name
    ) from exc

from .blocking import BlockingCoordinator
from .coordinator import Coordinator
from .stats import WorkerState, WorkerStats

__all__ = ("PrometheusExporter",)

# How often a started exporter refreshes its snapshot of an async Coordinator's stats;
# WorkerStats' load figures are sampled every 0.25 s, so faster would repeat them.
DEFAULT_INTERVAL_S = 1.0

_STATES: tuple[str, ...] = get_args(WorkerState)


class PrometheusExporter(Collector):
    """Publishes a coordinator's ``stats()`` as Prometheus metrics.

    Args:
        source: a :class:`~procoord.BlockingCoordinator` (or :class:`~procoord.Executor`),
            read afresh at each scrape; or a :class:`~procoord.Coordinator`, whose stats
            live on its event loop: :meth:`refresh` takes a snapshot there, and
            :meth:`start` (or ``async with exporter:``) refreshes it every ``interval``
            seconds until :meth:`stop`.
        registry: where to register (default: prometheus-client's global ``REGISTRY``;
            None registers nowhere).
        namespace: the metric name prefix.
        interval: seconds between refreshes of a started exporter.
    """

    def __init__(
        self,
        source: Coordinator | BlockingCoordinator | object,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "procoord",
        interval: float = DEFAULT_INTERVAL_S,
    ) -> None:
        inner = getattr(source, "coordinator", None)  # an Executor's or an interface client's
        self._coordinator: Coordinator | None = None
        self._blocking: BlockingCoordinator | None = None
        for candidate in (source, inner):
            if isinstance(candidate, Coordinator):
                self._coordinator = candidate
                break
            if isinstance(candidate, BlockingCoordinator):
                self._blocking = candidate
                break
        else:
            raise TypeError(
                "PrometheusExporter takes a Coordinator, a BlockingCoordinator, an Executor or an "
                f"interface client, not {type(source).__qualname__}"
            )
        self._namespace = namespace
        self._interval = interval
        self._snapshot: tuple[Mapping[Hashable, WorkerStats], int] = ({}, 0)
        self._task: asyncio.Task[None] | None = None
        self._registry = registry
        if registry is not None:
            registry.register(self)

    # -- keeping the snapshot of an async Coordinator ------------------------------------

    async def refresh(self) -> None:
        """Take a snapshot of the coordinator's stats now (on its event loop)."""
        if self._coordinator is not None:
            self._snapshot = (await self._coordinator.stats(), self._coordinator.pending)

    async def start(self) -> None:
        """Refresh now, then every ``interval`` seconds in a task on the running loop."""
        await self.refresh()
        if self._task is None and self._coordinator is not None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever(), name="procoord-metrics")

    async def stop(self) -> None:
        """Stop refreshing (the last snapshot stays published until :meth:`unregister`)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def unregister(self) -> None:
        """Remove the metrics from the registry."""
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.unregister(self)

    async def __aenter__(self) -> PrometheusExporter:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    # -- the collector ---------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        """The metrics, from a fresh read of a BlockingCoordinator or the last snapshot."""
        stats: Mapping[Hashable, WorkerStats]
        if self._blocking is not None and not self._blocking.closed:
            stats, pending = self._blocking.stats(), self._blocking.pending
        else:
            stats, pending = self._snapshot
        ns = self._namespace
        labels = ["worker"]

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{ns}_{name}", doc, labels=labels)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"{ns}_{name}", doc, labels=labels)

        queue = gauge("worker_queue_length", "Tasks bound to the worker and not finished, the running one included.")
        in_flight = gauge("worker_in_flight", "Tasks written to the worker process and not finished.")
        ewma = gauge("worker_task_seconds_ewma", "Exponentially weighted mean task run time, in seconds.")
        cpu = gauge("worker_cpu_percent", "CPU use of the worker process (100 = one core).")
        rss = gauge("worker_rss_bytes", "Resident set size of the worker process.")
        uptime = gauge("worker_uptime_seconds", "Seconds since the current worker process became ready.")
        state = GaugeMetricFamily(f"{ns}_worker_state", "1 for the worker's current state.", labels=["worker", "state"])
        completed = counter("worker_tasks_completed", "Tasks that returned a result.")
        failed = counter("worker_tasks_failed", "Tasks that ended in an error.")
        restarts = counter("worker_restarts", "Restarts of the worker process after a crash or timeout.")
        recycles = counter("worker_recycles", "Replacements of the worker process after max_tasks or max_rss.")
        retries = counter("worker_retries", "Tasks lost with the worker (crash, timeout) and queued to run again.")
        parts = counter("worker_parts_streamed", "Parts of streaming tasks received from the worker.")
        for s in stats.values():
            worker = [str(s.ident)]
            queue.add_metric(worker, s.queue_len)
            in_flight.add_metric(worker, s.in_flight)
            if s.ewma_ms is not None:
                ewma.add_metric(worker, s.ewma_ms / 1000)
            cpu.add_metric(worker, s.cpu_percent)
            rss.add_metric(worker, s.rss_bytes)
            uptime.add_metric(worker, s.uptime_s)
            for name in _STATES:
                state.add_metric([str(s.ident), name], 1.0 if s.state == name else 0.0)
            completed.add_metric(worker, s.completed)
            failed.add_metric(worker, s.failed)
            restarts.add_metric(worker, s.restarts)
            recycles.add_metric(worker, s.recycles)
            retries.add_metric(worker, s.retries)
            parts.add_metric(worker, s.parts_streamed)
        workers = GaugeMetricFamily(f"{ns}_workers", "Workers of the coordinator.", value=len(stats))
        pending_tasks = GaugeMetricFamily(f"{ns}_tasks_pending", "Tasks submitted and not finished.", value=pending)
        waiting = GaugeMetricFamily(
            f"{ns}_tasks_waiting",
            "Tasks waiting in the coordinator, not yet bound to a worker.",
            value=max(pending - sum(s.queue_len for s in stats.values()), 0),
        )
        return [
            queue,
            in_flight,
            ewma,
            cpu,
            rss,
            uptime,
            state,
            completed,
            failed,
            restarts,
            parts,
            recycles,
            retries,
            workers,
            pending_tasks,
            waiting,
        ]

    def describe(self) -> Iterable[Metric]:
        """Nothing: the metrics are read at each collection (no check at registration)."""
        return []

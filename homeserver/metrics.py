"""Prometheus metrics, served on a listener of their own (config `metrics`, docs/metrics.md).

Off by default. Each app has its own CollectorRegistry, so tests (and a process
that builds several apps) never share counters. Counters that code increments
as it runs (requests, persist time, media bytes) live here; numbers that exist
anyway (the notifier's waiters, the pool, the caches' hit counts, the sender's
failures, the federation queue in the database) are read when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from homeserver.client.base import route_pattern
from homeserver.http import REQUEST_OBSERVER
from homeserver.services.clock import now_ms
from homeserver.services.container import Services
from homeserver.storage.cache import LruCache
from homeserver.storage.metrics_queries import FederationQueueDepth, MetricsQueries

log = logging.getLogger(__name__)

# Anything else a client sends as a method is counted as "other": labels stay bounded.
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
# A request that matches no route: one label, whatever path was asked for.
UNMATCHED = "unmatched"
# /sync long polls last up to 30 s and more: buckets reach that far.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, float("inf"))
_PERSIST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, float("inf"))


def endpoint_of(request: web.Request) -> str:
    """The route's pattern ("/_matrix/client/{version}/rooms/{room_id}/send/..."), never the raw
    path: no user or room ids in labels, and a 404 for any path is the one label "unmatched"."""
    return route_pattern(request.match_info.route.resource) or UNMATCHED


def _is_media(endpoint: str, word: str) -> bool:
    return "/media/" in endpoint and word in endpoint


class HomeserverMetrics:
    def __init__(self, services: Services, caches: dict[str, LruCache], federation_sender: Any = None):
        self.services = services
        self.caches = caches
        self.federation_sender = federation_sender
        self.queries = MetricsQueries(services.db)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "homeserver_http_requests", "HTTP requests answered, by route pattern, method and status",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "homeserver_http_request_duration_seconds", "Time from request to answer, by route pattern and method",
            ["endpoint", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.persist = Histogram(
            "homeserver_event_persist_duration_seconds",
            "Time to persist one event (step 3 of the pipeline: one transaction), local or received",
            buckets=_PERSIST_BUCKETS, registry=self.registry,
        )
        self.media_uploaded = Counter(
            "homeserver_media_uploaded_bytes", "Bytes of media accepted by uploads", registry=self.registry,
        )
        self.media_downloaded = Counter(
            "homeserver_media_downloaded_bytes", "Bytes of media served by downloads and thumbnails",
            registry=self.registry,
        )
        self._queue = FederationQueueDepth(0, 0, 0)
        self.registry.register(_ScrapeTimeCollector(self))

    def observe_request(
        self, request: web.Request, status: int, seconds: float, response: web.StreamResponse | None
    ) -> None:
        endpoint = endpoint_of(request)
        method = request.method if request.method in _METHODS else "other"
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method).observe(seconds)
        if status == 200 and method in ("POST", "PUT") and _is_media(endpoint, "/upload"):
            self.media_uploaded.inc(request.content_length or 0)

    async def count_download(self, request: web.Request, response: web.StreamResponse) -> None:
        """on_response_prepare: a file answer knows its length only when its headers go out,
        after the middleware has returned it."""
        if request.method != "GET" or response.status not in (200, 206) or response.content_length is None:
            return
        endpoint = endpoint_of(request)
        if _is_media(endpoint, "/download") or _is_media(endpoint, "/thumbnail"):
            self.media_downloaded.inc(response.content_length)

    async def refresh(self) -> None:
        """Read, before a scrape, what only the database knows."""
        try:
            self._queue = await self.queries.federation_queue_depth(now_ms())
        except Exception:  # a scrape still answers with the rest
            log.exception("metrics: cannot read the federation queue")

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)


class _ScrapeTimeCollector(Collector):
    """Values read at scrape time from the objects that keep them anyway."""

    def __init__(self, metrics: HomeserverMetrics):
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        m = self.metrics
        yield GaugeMetricFamily(
            "homeserver_sync_waiters", "Long-polling /sync requests waiting for something new",
            value=m.services.notifier.waiting_users(),
        )
        pool = m.services.db.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        yield GaugeMetricFamily("homeserver_db_pool_size", "Open database connections", value=size)
        yield GaugeMetricFamily("homeserver_db_pool_in_use", "Database connections in use", value=size - idle)
        yield GaugeMetricFamily("homeserver_db_pool_max", "Most database connections the pool opens",
                                value=pool.get_max_size())
        hits = CounterMetricFamily("homeserver_cache_hits", "Lookups answered by the cache", labels=["cache"])
        misses = CounterMetricFamily("homeserver_cache_misses", "Lookups the cache could not answer",
                                     labels=["cache"])
        entries = GaugeMetricFamily("homeserver_cache_entries", "Entries held by the cache", labels=["cache"])
        for name, cache in m.caches.items():
            hits.add_metric([name], cache.hits)
            misses.add_metric([name], cache.misses)
            entries.add_metric([name], len(cache))
        yield hits
        yield misses
        yield entries
        queue = m._queue
        yield GaugeMetricFamily("homeserver_federation_queued_pdus",
                                "Events waiting to be sent to other servers (all destinations)", value=queue.pdus)
        yield GaugeMetricFamily("homeserver_federation_queued_edus",
                                "EDUs waiting to be sent to other servers (all destinations)", value=queue.edus)
        yield GaugeMetricFamily("homeserver_federation_destinations_backing_off",
                                "Servers that failed last time and are waited for before a retry",
                                value=queue.backing_off)
        sender = m.federation_sender
        yield CounterMetricFamily("homeserver_federation_send_failures",
                                  "Outbound federation transactions that failed (network or refusal)",
                                  value=sender.failed_sends if sender is not None else 0)


METRICS = web.AppKey("metrics", HomeserverMetrics)


def main_caches(services: Services) -> dict[str, LruCache]:
    """The LRUs that matter for memory and speed, by the name their metrics carry.

    Read through attributes of their owners, which keep them private; a cache
    that a refactoring moved is left out rather than failing the start.
    """
    found = {
        "events": getattr(services.events, "_cache", None),
        "state_groups": getattr(services.state, "_groups", None),
        "access_tokens": getattr(services.tokens, "_cache", None),
        "state_resolution": getattr(services.pipeline.resolver, "_resolved", None),
    }
    return {name: cache for name, cache in found.items() if isinstance(cache, LruCache)}


def install(app: web.Application, services: Services, federation_sender: Any = None) -> HomeserverMetrics | None:
    """Count this app's requests when metrics are enabled; serve them with ``metrics_app``."""
    if not services.config.metrics.enabled:
        return None
    metrics = HomeserverMetrics(services, main_caches(services), federation_sender)
    app[METRICS] = metrics
    app[REQUEST_OBSERVER] = metrics.observe_request
    services.pipeline.persist_timer = metrics.persist.observe
    app.on_response_prepare.append(metrics.count_download)
    return metrics


def metrics_app(metrics: HomeserverMetrics) -> web.Application:
    """The metrics listener's app: GET /metrics and nothing else (never on the Matrix listener)."""

    async def serve_metrics(request: web.Request) -> web.Response:
        body = await metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app

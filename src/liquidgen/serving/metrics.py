"""Prometheus text exposition of the server's counters (no client library needed)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
ROUTES = (
    "/v1/images/generations",
    "/v1/chat/completions",
    "/v1/models",
    "/health",
    "/metrics",
    "/",
)
TOKENS_WINDOW = 10.0  # seconds over which tokens/s is averaged


class Metrics:
    """Request counters and latency histograms per route, plus the engine's gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.buckets: dict[str, list[int]] = {}
        self.sums: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.rejected = 0  # 429s
        self.disconnects = 0

    @staticmethod
    def route(path: str) -> str:
        return path if path in ROUTES else "other"

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = self.route(path)
        with self._lock:
            self.requests[(route, status)] += 1
            counts = self.buckets.setdefault(route, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.sums[route] += seconds
            self.counts[route] += 1
            if status == 429:
                self.rejected += 1

    def render(self, engine: Any | None) -> str:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{labels} {value:g}")

        with self._lock:
            metric(
                "liquidgen_requests_total",
                "counter",
                "HTTP requests answered, by route and status.",
                [
                    (f'{{route="{r}",status="{s}"}}', n)
                    for (r, s), n in sorted(self.requests.items())
                ],
            )
            metric(
                "liquidgen_rejected_total",
                "counter",
                "Requests refused with 429 (queue full).",
                [("", self.rejected)],
            )
            lines.append("# HELP liquidgen_request_seconds Time from request to last byte.")
            lines.append("# TYPE liquidgen_request_seconds histogram")
            for route, counts in sorted(self.buckets.items()):
                for bound, n in zip(LATENCY_BUCKETS, counts, strict=True):
                    lines.append(
                        f'liquidgen_request_seconds_bucket{{route="{route}",le="{bound:g}"}} {n}'
                    )
                lines.append(
                    f'liquidgen_request_seconds_bucket{{route="{route}",le="+Inf"}} {self.counts[route]}'
                )
                lines.append(
                    f'liquidgen_request_seconds_sum{{route="{route}"}} {self.sums[route]:g}'
                )
                lines.append(
                    f'liquidgen_request_seconds_count{{route="{route}"}} {self.counts[route]}'
                )
        if engine is not None:
            s = engine.stats
            now = time.monotonic()
            recent = [n for t, n in list(s.recent) if now - t <= TOKENS_WINDOW]
            gauges = [
                ("liquidgen_queue_depth", "Requests waiting for rows.", engine.queue_depth),
                ("liquidgen_active_requests", "Requests being decoded.", engine.active_jobs),
                ("liquidgen_active_rows", "Rows in the running batch.", engine.active_rows),
                (
                    "liquidgen_kv_cache_tokens",
                    "Columns of the batch KV cache.",
                    engine.cache_length,
                ),
                (
                    "liquidgen_tokens_per_second",
                    f"Tokens drawn per second over the last {TOKENS_WINDOW:g} s.",
                    sum(recent) / TOKENS_WINDOW,
                ),
                ("liquidgen_last_step_rows", "Rows of the last decode forward.", s.last_step_rows),
            ]
            for name, help_text, value in gauges:
                metric(name, "gauge", help_text, [("", value)])
            counters = [
                ("liquidgen_decode_steps_total", "Decode forwards.", s.steps),
                ("liquidgen_prefills_total", "Prefill forwards.", s.prefills),
                ("liquidgen_image_tokens_total", "Image tokens drawn.", s.image_tokens),
                ("liquidgen_text_tokens_total", "Text tokens drawn.", s.text_tokens),
                ("liquidgen_images_total", "Images finished.", s.images),
                ("liquidgen_jobs_cancelled_total", "Requests whose client left.", s.jobs_cancelled),
                ("liquidgen_jobs_timed_out_total", "Requests that timed out.", s.jobs_timed_out),
                ("liquidgen_jobs_failed_total", "Requests failed by the engine.", s.jobs_failed),
                ("liquidgen_engine_seconds_total", "Time spent in engine steps.", s.step_seconds),
            ]
            for name, help_text, value in counters:
                metric(name, "counter", help_text, [("", value)])
        return "\n".join(lines) + "\n"

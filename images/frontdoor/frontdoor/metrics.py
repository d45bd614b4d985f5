"""Prometheus text exposition, by hand (no client library: the image has a fixed dependency set).

Updates happen per request, never per streamed event, so they cost nothing on the hot path.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, deque

# Paths get their own label value only when known, so a scanner cannot blow up cardinality.
KNOWN_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/messages",
        "/inference/v1/generate",
        "/generative_scoring",
        "/v1/models",
        "/v1/embeddings",
        "/tokenize",
        "/detokenize",
        "/health",
        "/status",
        "/frontdoor/status",
        "/metrics",
        "/version",
    }
)

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Histogram:
    def __init__(self, name: str, help_: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0
        #: The last observations, newest last (the operator page's sparkline).
        self.recent: deque[float] = deque(maxlen=60)

    def observe(self, value: float) -> None:
        self.recent.append(value)
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{self.name}_sum {self.sum:.6f}")
        lines.append(f"{self.name}_count {self.count}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.refusals: Counter[str] = Counter()
        self.upstream_errors: Counter[str] = Counter()
        self.ttft = Histogram(
            "frontdoor_time_to_first_byte_seconds",
            "Generation request arrival to the first response body byte relayed.",
            _TTFT_BUCKETS,
        )
        self.duration = Histogram(
            "frontdoor_generation_duration_seconds",
            "Generation request arrival to the end of the relayed response.",
            _DURATION_BUCKETS,
        )
        self.queue_wait = Histogram(
            "frontdoor_queue_wait_seconds",
            "Time generations waited for a place (queue or switch hold).",
            _TTFT_BUCKETS,
        )

    def request(self, path: str, status: int) -> None:
        self.requests[(path if path in KNOWN_PATHS else "other", status)] += 1

    def render(
        self,
        *,
        active: int,
        queued: int,
        cap: int,
        state: str,
        queued_bytes: int = 0,
        relays: int = 0,
    ) -> bytes:
        lines = [
            "# HELP frontdoor_requests_total Requests answered, by path and status.",
            "# TYPE frontdoor_requests_total counter",
        ]
        for (path, status), n in sorted(self.requests.items()):
            lines.append(f'frontdoor_requests_total{{path="{path}",status="{status}"}} {n}')
        lines += [
            "# HELP frontdoor_refusals_total Requests the frontdoor refused itself, by error type.",
            "# TYPE frontdoor_refusals_total counter",
        ]
        lines += [
            f'frontdoor_refusals_total{{type="{t}"}} {n}' for t, n in sorted(self.refusals.items())
        ]
        lines += [
            "# HELP frontdoor_upstream_errors_total Failures talking to the upstream, by kind.",
            "# TYPE frontdoor_upstream_errors_total counter",
        ]
        lines += [
            f'frontdoor_upstream_errors_total{{kind="{k}"}} {n}'
            for k, n in sorted(self.upstream_errors.items())
        ]
        lines += [
            "# HELP frontdoor_active_generations Generations running now.",
            "# TYPE frontdoor_active_generations gauge",
            f"frontdoor_active_generations {active}",
            "# HELP frontdoor_queued_generations Generations waiting for a place now.",
            "# TYPE frontdoor_queued_generations gauge",
            f"frontdoor_queued_generations {queued}",
            "# HELP frontdoor_queued_body_bytes Bytes the waiting generations' bodies hold now.",
            "# TYPE frontdoor_queued_body_bytes gauge",
            f"frontdoor_queued_body_bytes {queued_bytes}",
            "# HELP frontdoor_active_relays Requests that are not generations being relayed now.",
            "# TYPE frontdoor_active_relays gauge",
            f"frontdoor_active_relays {relays}",
            "# HELP frontdoor_max_active_generations The current cap.",
            "# TYPE frontdoor_max_active_generations gauge",
            f"frontdoor_max_active_generations {cap}",
            "# HELP frontdoor_route_state 1 for the current route state.",
            "# TYPE frontdoor_route_state gauge",
        ]
        lines += [
            f'frontdoor_route_state{{state="{s}"}} {int(s == state)}'
            for s in ("serving", "switching", "down", "faulted")
        ]
        lines += [
            "# HELP frontdoor_generations_total Generation requests finished (any status).",
            "# TYPE frontdoor_generations_total counter",
            f"frontdoor_generations_total {self.duration.count}",
        ]
        lines += self.ttft.render() + self.duration.render() + self.queue_wait.render()
        return ("\n".join(lines) + "\n").encode()

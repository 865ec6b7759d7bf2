"""Per-credential request rate limits (Aperture's `ratelimits`), as pure functions of time.

A route may carry rules:

    rate_limits:
      - {path: '^/v1/chat/', requests: 5, per: 1s, burst: 100}
      - {path: '^/v1/embeddings', requests: 2, per: 1m}   # burst defaults to requests

Each rule is a token bucket holding up to `burst` tokens, refilled at
`requests / per` tokens a second, kept per subject: the credential's id when
the request carried a valid one (`token:<token id>` for L402, `hash:<payment
hash>` for a Payment charge, `session:<id>`), else the client address
(`ip:<client key>`). Every rule whose `path` matches the request's path
applies (no `path`: every path); the request passes only if every matching
bucket has a token, and then one is taken from each; when one refuses,
nothing is taken and the answer is 429 with Retry-After = the longest wait.
That is Aperture's rule, including the keying of buckets by rule pattern.

The same arithmetic serves the in-process limiter here and the shared one in
the store (`gateway.store.buckets.take_all`), so both decide alike.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

EPSILON = 1e-6  # float slack on refills, as the challenge limiter forgives
MAX_RULES = 32
DEFAULT_MAX_BUCKETS = 100_000
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RULE_KEYS = frozenset({"path", "requests", "per", "burst"})


class LimitsError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_duration(value: object, field: str = "per") -> float:
    """Seconds from Go's duration syntax (`1s`, `500ms`, `1m30s`, `1h`) or a number of seconds."""
    if isinstance(value, bool):
        raise LimitsError(field, "must be a duration such as 1s, 1m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value and _DURATION.sub("", value) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(value))
    else:
        raise LimitsError(field, f"must be a duration such as 1s, 1m or 1h, got {value!r}")
    if not 0.001 <= seconds <= 86400 * 366:
        raise LimitsError(field, "must be between 1ms and a year")
    return seconds


@dataclass(frozen=True, slots=True)
class RateRule:
    pattern: str | None  # as configured; None = every path
    requests: int
    per_seconds: float
    burst: int

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.requests / self.per_seconds

    @property
    def rule_id(self) -> str:
        """Names the rule's buckets: its pattern only, so a reload that changes the
        numbers keeps every subject's bucket (capped at the new burst)."""
        return hashlib.sha256((self.pattern or "").encode()).hexdigest()[:16]

    def matches(self, path: str) -> bool:
        return self.pattern is None or re.search(self.pattern, path) is not None


def parse_rate_rules(raw: object, field: str = "rate_limits") -> tuple[RateRule, ...]:
    if not isinstance(raw, list):
        raise LimitsError(field, "must be a list of rules")
    if len(raw) > MAX_RULES:
        raise LimitsError(field, f"at most {MAX_RULES} rules")
    rules = []
    for i, item in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise LimitsError(where, "must be a mapping")
        unknown = sorted(set(item) - _RULE_KEYS)
        if unknown:
            raise LimitsError(f"{where}.{unknown[0]}", "unknown key (path, requests, per, burst)")
        pattern = item.get("path")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise LimitsError(f"{where}.path", "must be a regular expression")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise LimitsError(f"{where}.path", f"bad regular expression: {exc}") from None
        requests = item.get("requests")
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise LimitsError(f"{where}.requests", "must be a positive integer")
        if "per" not in item:
            raise LimitsError(f"{where}.per", "required (e.g. 1s, 1m, 1h)")
        per = parse_duration(item["per"], f"{where}.per")
        burst = item.get("burst", requests)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise LimitsError(f"{where}.burst", "must be a positive integer")
        rules.append(RateRule(pattern, requests, per, burst))
    return tuple(rules)


def credential_subject(kind: str, ident: bytes) -> str:
    """`token:<hex>` (L402 token id), `hash:<hex>` (Payment charge), `session:<hex>`."""
    if kind not in ("token", "hash", "session"):
        raise ValueError(f"unknown credential kind {kind!r}")
    return f"{kind}:{ident.hex()}"


def client_subject(client_key: str) -> str:
    """An unauthenticated request's subject (`paywall.ratelimit.client_key` of its address)."""
    return f"ip:{client_key}"


def bucket_key(route: str, rule: RateRule, subject: str) -> str:
    """The bucket's name in the store (beside the challenge limiter's client keys)."""
    return f"rl:{route}:{rule.rule_id}:{subject}"


class BucketState(NamedTuple):
    tokens: float
    updated: float


class Decision(NamedTuple):
    """`wait` None = allowed (and `states` are the buckets after the take), else seconds."""

    wait: float | None
    states: tuple[BucketState, ...]


def refilled(state: BucketState | None, now: float, rate: float, burst: int) -> float:
    """Tokens in a bucket at `now`: a missing bucket is full; a clock that went back refills 0."""
    if state is None:
        return float(burst)
    elapsed = max(0.0, now - state.updated)
    return min(float(burst), state.tokens + elapsed * rate)


def take_all(
    states: Sequence[BucketState | None], rules: Sequence[RateRule], now: float
) -> Decision:
    """Take one token from every bucket, or from none (see the module docstring)."""
    levels = [refilled(s, now, r.rate, r.burst) for s, r in zip(states, rules, strict=True)]
    waits = [(1.0 - t) / r.rate for t, r in zip(levels, rules, strict=True) if t < 1.0 - EPSILON]
    if waits:
        unchanged = tuple(
            BucketState(t, max(now, s.updated) if s else now)
            for t, s in zip(levels, states, strict=True)
        )
        return Decision(max(waits), unchanged)
    return Decision(None, tuple(BucketState(max(0.0, t - 1.0), now) for t in levels))


def full_at(state: BucketState, rule: RateRule) -> float:
    """When the bucket is full again (then it may be forgotten: missing means full)."""
    return state.updated + (rule.burst - state.tokens) / rule.rate


def retry_after(wait: float) -> int:
    """Whole seconds, rounded up, at least 1 (Aperture's Retry-After)."""
    return max(1, math.ceil(wait - EPSILON))


class LocalRateLimiter:
    """Buckets in this process (SQLite stores): at most `max_buckets`, least recent out.

    An evicted bucket comes back full, so eviction can only let more through.
    """

    def __init__(self, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, BucketState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(
        self, route: str, rules: Sequence[RateRule], path: str, subject: str, now: float
    ) -> float | None:
        """None = go ahead (a token taken from every matching rule), else seconds to wait."""
        matching = [r for r in rules if r.matches(path)]
        if not matching:
            return None
        keys = [bucket_key(route, r, subject) for r in matching]
        decision = take_all([self._buckets.get(k) for k in keys], matching, now)
        if decision.wait is None:
            for key, state in zip(keys, decision.states, strict=True):
                self._buckets[key] = state
                self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_buckets:
                self._buckets.popitem(last=False)
        return decision.wait

"""A throw-away real Prometheus server for tests.

`PrometheusServer` copies ``deploy/prometheus/prometheus.yml`` (and the rule
files it names) into a temporary directory, points the ``l402-gateway`` scrape
job at a given ``host:port``, sets the scrape and evaluation intervals to 1s,
and starts Debian's ``prometheus`` binary on 127.0.0.1 and a free port with its
TSDB in the same temporary directory. Readiness is awaited by polling
``/-/ready`` with a deadline; queries go through the HTTP API.

Sync use (the scrape target must be served from another thread or process,
because the helpers block while they poll)::

    with PrometheusServer("127.0.0.1:8000") as prom:
        prom.wait_for_scrape()
        results = prom.wait_for('l402_paid_requests_total{route="x"}', lambda r: bool(r))

Async use (the target may run on the test's own event loop; the async helpers
never block it)::

    async with PrometheusServer(f"127.0.0.1:{server.port}") as prom:
        await prom.wait_for_async("l402_lnd_up", lambda r: bool(r))

On exit the process it started is terminated by its own PID (killed if it
does not stop within 10s) and the temporary directory is removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
DEFAULT_JOB = "l402-gateway"

Result = dict[str, Any]
Predicate = Callable[[list[Result]], bool]
T = TypeVar("T")


class PrometheusError(RuntimeError):
    """Prometheus could not be started or answered unexpectedly."""


class PrometheusQueryError(PrometheusError):
    """The HTTP API refused a query (bad PromQL, execution error)."""

    def __init__(self, promql: str, error_type: str, error: str) -> None:
        super().__init__(f"query {promql!r} failed: {error_type}: {error}")
        self.promql = promql
        self.error_type = error_type
        self.error = error


def require_binary(name: str) -> str:
    """Path of ``name`` on PATH; fail when missing under CI (env ``CI`` set), skip otherwise."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name!r} not found on PATH: install Debian's prometheus package "
            "(scripts/ensure-system-deps.sh or `make system-deps`)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def poll_until(
    fetch: Callable[[], T],
    predicate: Callable[[T], bool],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``fetch`` until ``predicate`` holds on its result; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)


def sample_value(results: Sequence[Result], **labels: str) -> float:
    """Value of the single instant-vector sample whose labels include ``labels``."""
    matches = [
        r for r in results if all(r.get("metric", {}).get(k) == v for k, v in labels.items())
    ]
    if len(matches) != 1:
        raise AssertionError(
            f"expected one sample matching {labels}, got {len(matches)}: {results}"
        )
    return float(matches[0]["value"][1])


def values_by(results: Sequence[Result], label: str) -> dict[str, float]:
    """``{label value: sample value}`` for an instant vector keyed by one label."""
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in results}


class PrometheusServer:
    """A real Prometheus scraping one target, in a temporary directory."""

    def __init__(
        self,
        target: str,
        *,
        config: Path = DEFAULT_CONFIG,
        job: str = DEFAULT_JOB,
        interval: str = "1s",
        binary: str | None = None,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.config_source = Path(config)
        self.job = job
        self.interval = interval
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.host = "127.0.0.1"
        self.port = 0
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- lifecycle ---------------------------------------------------------

    @property
    def url(self) -> str:
        if not self.port:
            raise PrometheusError("Prometheus is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def config_path(self) -> Path:
        if self.workdir is None:
            raise PrometheusError("Prometheus is not running")
        return self.workdir / "prometheus.yml"

    def start(self) -> Self:
        if self._proc is not None:
            raise PrometheusError("already started")
        binary = self.binary or shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus binary not found on PATH")
        self.workdir = Path(tempfile.mkdtemp(prefix="l402-prometheus-"))
        try:
            self._write_config()
            last_error: PrometheusError | None = None
            for _attempt in range(3):
                try:
                    self._launch(binary)
                    return self
                except _PortTaken as exc:  # lost a race for the free port: try another
                    last_error = exc
            raise PrometheusError(f"could not bind a port: {last_error}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the process this object started (by its PID) and remove the temp dir."""
        self._stop_process()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def _write_config(self) -> None:
        assert self.workdir is not None
        raw = yaml.safe_load(self.config_source.read_text())
        if not isinstance(raw, dict):
            raise PrometheusError(f"{self.config_source}: not a YAML mapping")
        cfg: dict[str, Any] = raw
        glob = cfg.setdefault("global", {})
        glob["scrape_interval"] = self.interval
        glob["scrape_timeout"] = self.interval
        glob["evaluation_interval"] = self.interval
        jobs = [j for j in cfg.get("scrape_configs", []) if j.get("job_name") == self.job]
        if len(jobs) != 1:
            raise PrometheusError(f"{self.config_source}: expected one scrape job {self.job!r}")
        job = jobs[0]
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = self.interval
        statics = job.get("static_configs") or [{}]
        for static in statics:
            static["targets"] = [self.target]
        job["static_configs"] = statics
        # Rule files are resolved relative to the config file: copy them alongside.
        for rule_file in cfg.get("rule_files", []):
            path = Path(rule_file)
            if path.is_absolute():
                continue
            source = self.config_source.parent / path
            dest = self.workdir / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def _launch(self, binary: str) -> None:
        assert self.workdir is not None
        port = free_port(self.host)
        log_path = self.workdir / "prometheus.log"
        self._log = log_path.open("ab")
        argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{port}",
            "--log.level=info",
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self.port = port
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._ready_once():
                return
            try:
                code = self._proc.wait(timeout=0.05)  # doubles as the pause between polls
            except subprocess.TimeoutExpired:
                code = None
            if code is not None:
                log = self.log_tail()
                self._stop_process()
                if "address already in use" in log:
                    raise _PortTaken(log)
                raise PrometheusError(f"prometheus exited with {code} during start-up:\n{log}")
            if time.monotonic() > deadline:
                log = self.log_tail()
                raise PrometheusError(f"prometheus not ready after {self.startup_timeout}s:\n{log}")

    def _ready_once(self) -> bool:
        try:
            ready_url = f"{self.url}/-/ready"  # always http://127.0.0.1:PORT
            with urllib.request.urlopen(ready_url, timeout=1.0) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of Prometheus' own log (for failure messages)."""
        if self.workdir is None:
            return ""
        log_path = self.workdir / "prometheus.log"
        if not log_path.exists():
            return ""
        return log_path.read_bytes()[-max_bytes:].decode(errors="replace")

    # -- HTTP API ----------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raises on an API error)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10.0) as resp:  # noqa: S310 (http://127.0.0.1)
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            try:
                body = json.load(exc)
            except ValueError:
                raise PrometheusError(f"GET {url}: HTTP {exc.code}") from exc
            finally:
                exc.close()
        if body.get("status") != "success":
            raise PrometheusQueryError(
                (params or {}).get("query", path),
                str(body.get("errorType")),
                str(body.get("error")),
            )
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[Result]:
        """Instant query; a list of ``{"metric": {...}, "value": [ts, "v"]}``.

        Scalar and string results come back as one sample with empty labels.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[Result] = data["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Predicate = bool,
        timeout: float = 30.0,
        interval: float = 0.1,
    ) -> list[Result]:
        """Poll ``query(promql)`` until ``predicate(results)`` holds; TimeoutError otherwise.

        A refused query (bad PromQL) raises at once instead of being retried.
        """
        return poll_until(
            lambda: self.query(promql), predicate, timeout, interval, what=repr(promql)
        )

    def wait_for_scrape(self, timeout: float = 30.0) -> list[Result]:
        """Wait until the target's last scrape succeeded (``up == 1``)."""
        return self.wait_for(f'up{{job="{self.job}"}} == 1', lambda r: len(r) == 1, timeout=timeout)

    def targets(self) -> list[Result]:
        data: list[Result] = self.api("targets", {"state": "active"})["activeTargets"]
        return data

    def rule_groups(self) -> list[Result]:
        data: list[Result] = self.api("rules")["groups"]
        return data

    def wait_for_rules(
        self, predicate: Callable[[list[Result]], bool], timeout: float = 30.0
    ) -> list[Result]:
        """Poll ``/api/v1/rules`` until ``predicate(groups)`` holds."""
        return poll_until(self.rule_groups, predicate, timeout, what="rule groups")

    async def query_async(self, promql: str, at: float | None = None) -> list[Result]:
        return await asyncio.to_thread(self.query, promql, at)

    async def wait_for_async(
        self,
        promql: str,
        predicate: Predicate = bool,
        timeout: float = 30.0,
        interval: float = 0.1,
    ) -> list[Result]:
        """``wait_for`` that yields to the event loop between polls."""
        deadline = time.monotonic() + timeout
        while True:
            results = await self.query_async(promql)
            if predicate(results):
                return results
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{promql!r} did not satisfy the predicate within {timeout}s; "
                    f"last results: {results}"
                )
            await asyncio.sleep(interval)

    async def wait_for_scrape_async(self, timeout: float = 30.0) -> list[Result]:
        return await self.wait_for_async(
            f'up{{job="{self.job}"}} == 1', lambda r: len(r) == 1, timeout=timeout
        )


class _PortTaken(PrometheusError):
    pass

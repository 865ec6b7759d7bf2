"""Settings for the EP212 runner and the payer backends, read from the environment.

The EP212 variable names are the old harness's, so its runbook still works.
Payer backend: the wallet executor when `OA_LIGHTNING_WALLET_EXECUTOR_BASE_URL`
is set, otherwise our own LND node (`L402_BUYER_LND_*`, needs a macaroon that
may pay, i.e. admin.macaroon). The node's address has no default: a buyer
that guessed one (127.0.0.1:10009) would try to pay through whatever node
answers there, so a missing setting is named instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.buyer.errors import SettingsError

ENV_SATS4AI_URL = "OA_LIGHTNING_OPS_EP212_SATS4AI_URL"
ENV_ROUTE_A_URL = "OA_LIGHTNING_OPS_EP212_ROUTE_A_URL"
ENV_ROUTE_B_URL = "OA_LIGHTNING_OPS_EP212_ROUTE_B_URL"
ENV_MAX_SPEND = "OA_LIGHTNING_OPS_EP212_MAX_SPEND_MSATS"
ENV_ALLOWED_HOSTS = "OA_LIGHTNING_L402_ALLOWED_HOSTS"
ENV_EXECUTOR_URL = "OA_LIGHTNING_WALLET_EXECUTOR_BASE_URL"
ENV_EXECUTOR_TOKEN = "OA_LIGHTNING_WALLET_EXECUTOR_AUTH_TOKEN"  # noqa: S105 (a name)
ENV_EXECUTOR_TIMEOUT = "OA_LIGHTNING_WALLET_EXECUTOR_TIMEOUT_MS"
ENV_LND_HOST = "L402_BUYER_LND_HOST"
ENV_LND_TLS_CERT = "L402_BUYER_LND_TLS_CERT"
ENV_LND_MACAROON = "L402_BUYER_LND_MACAROON"
ENV_LND_FEE_LIMIT = "L402_BUYER_LND_FEE_LIMIT_MSAT"
ENV_LND_TIMEOUT = "L402_BUYER_LND_TIMEOUT_SECONDS"
# What each LND payer setting is, for the message that names a missing one.
LND_SETTINGS = {
    ENV_LND_HOST: "host:port of the paying node's gRPC interface, e.g. 127.0.0.1:10009",
    ENV_LND_TLS_CERT: "path to that node's tls.cert",
    ENV_LND_MACAROON: "path to a macaroon that may pay, e.g. admin.macaroon",
}
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
ENV_HOME = "HOME"
CACHE_DIR_NAME = "l402-buyer"
CACHE_FILE_NAME = "credentials.json"

BACKEND_EXECUTOR = "wallet_executor"
BACKEND_LND = "lnd"
MODES = ("regtest", "live")
NETWORK_FOR_MODE = {"regtest": "bcrt", "live": "bc"}
DEFAULT_SATS4AI_BODY: Mapping[str, Any] = {
    "input": [{"role": "User", "content": "In one sentence: what is an L402 payment?"}],
    "model": "Standard",
}


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) <= 0:
        raise SettingsError("invalid_setting", f"{name} must be a positive integer")
    return int(text)


def _url(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError("missing_setting", f"{name} is not set")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("invalid_setting", f"{name} is not an http(s) URL")
    return value


def default_cache_path(env: Mapping[str, str]) -> Path:
    """The per-user credential cache: `$XDG_CACHE_HOME/l402-buyer/credentials.json`.

    Per the XDG base directory spec a relative `XDG_CACHE_HOME` is ignored and
    `~/.cache` used instead. With neither variable usable there is no safe
    per-user place, so this refuses rather than guess (e.g. the working
    directory, which may be shared).
    """
    xdg = env.get(ENV_XDG_CACHE_HOME, "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / CACHE_DIR_NAME / CACHE_FILE_NAME
    home = env.get(ENV_HOME, "").strip()
    if home and Path(home).is_absolute():
        return Path(home) / ".cache" / CACHE_DIR_NAME / CACHE_FILE_NAME
    raise SettingsError(
        "missing_setting",
        f"no per-user cache directory: set {ENV_XDG_CACHE_HOME} or {ENV_HOME} "
        "(or pass --cache FILE or --no-cache)",
    )


@dataclass(frozen=True)
class ExecutorSettings:
    base_url: str
    auth_token: str = field(repr=False)
    timeout_ms: int = 60_000


@dataclass(frozen=True)
class LndPayerSettings:
    host: str
    tls_cert: Path
    macaroon: Path
    fee_limit_msat: int = 10_000
    timeout_seconds: int = 60


@dataclass(frozen=True)
class PayerSettings:
    """Exactly one backend is set; `backend` names it for summary.json."""

    executor: ExecutorSettings | None = None
    lnd: LndPayerSettings | None = None

    @property
    def backend(self) -> str:
        return BACKEND_EXECUTOR if self.executor is not None else BACKEND_LND

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PayerSettings:
        if env.get(ENV_EXECUTOR_URL, "").strip():
            token = env.get(ENV_EXECUTOR_TOKEN, "")
            if not token:
                raise SettingsError("missing_setting", f"{ENV_EXECUTOR_TOKEN} is not set")
            return cls(
                executor=ExecutorSettings(
                    base_url=_url(env, ENV_EXECUTOR_URL),
                    auth_token=token,
                    timeout_ms=_int(env, ENV_EXECUTOR_TIMEOUT, 60_000),
                )
            )
        missing = [name for name in LND_SETTINGS if not env.get(name, "").strip()]
        if len(missing) == len(LND_SETTINGS):
            raise SettingsError(
                "missing_setting",
                f"no payer: set {ENV_EXECUTOR_URL} (the wallet executor) or the LND payer's"
                f" {ENV_LND_HOST}, {ENV_LND_TLS_CERT} and {ENV_LND_MACAROON}",
            )
        if missing:
            raise SettingsError(
                "missing_setting",
                "LND payer: "
                + "; ".join(f"{name} is not set ({LND_SETTINGS[name]})" for name in missing),
            )
        host = env[ENV_LND_HOST].strip()
        _, colon, port = host.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                "invalid_setting", f"{ENV_LND_HOST} must be host:port (e.g. 127.0.0.1:10009)"
            )
        return cls(
            lnd=LndPayerSettings(
                host=host,
                tls_cert=Path(env[ENV_LND_TLS_CERT].strip()),
                macaroon=Path(env[ENV_LND_MACAROON].strip()),
                fee_limit_msat=_int(env, ENV_LND_FEE_LIMIT, 10_000),
                timeout_seconds=_int(env, ENV_LND_TIMEOUT, 60),
            )
        )


@dataclass(frozen=True)
class Ep212Settings:
    """Everything `run_ep212` needs besides an HTTP session and a payer."""

    sats4ai_url: str
    route_a_url: str
    route_b_url: str
    max_spend_msats: int = 100_000
    mode: str = "regtest"
    artifact_dir: Path = Path("output/l402-buyer/ep212-regtest")
    wallet_backend: str = BACKEND_LND
    allowed_hosts: tuple[str, ...] | None = None  # None: the three URLs' hosts
    expected_network: str | None = None  # None: from mode (regtest -> bcrt, live -> bc)
    sats4ai_body: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_SATS4AI_BODY))
    request_id: str | None = None  # None: a fresh `ep212-<hex>`

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingsError("invalid_setting", f"mode must be one of {', '.join(MODES)}")

    @property
    def hosts(self) -> tuple[str, ...]:
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        urls = (self.sats4ai_url, self.route_a_url, self.route_b_url)
        return tuple(sorted({(urlsplit(u).hostname or "").lower() for u in urls}))

    @property
    def network(self) -> str:
        return self.expected_network or NETWORK_FOR_MODE[self.mode]

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        mode: str = "regtest",
        artifact_dir: Path | None = None,
        wallet_backend: str = BACKEND_LND,
    ) -> Ep212Settings:
        allowed = env.get(ENV_ALLOWED_HOSTS, "").strip()
        return cls(
            sats4ai_url=_url(env, ENV_SATS4AI_URL),
            route_a_url=_url(env, ENV_ROUTE_A_URL),
            route_b_url=_url(env, ENV_ROUTE_B_URL),
            max_spend_msats=_int(env, ENV_MAX_SPEND, 100_000),
            mode=mode,
            artifact_dir=artifact_dir or Path(f"output/l402-buyer/ep212-{mode}"),
            wallet_backend=wallet_backend,
            allowed_hosts=tuple(h.strip() for h in allowed.split(",") if h.strip())
            if allowed
            else None,
        )

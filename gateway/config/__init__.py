"""routes.yaml schema and loader (see docs/configuration.md)."""

from gateway.config.errors import ConfigError, ConfigErrors
from gateway.config.loader import load_config
from gateway.config.model import (
    ChallengeRateLimit,
    GatewayConfig,
    ListenConfig,
    Listener,
    LndConfig,
    PathRewrite,
    Route,
    RouteTable,
    StoreConfig,
    TokenMode,
)
from gateway.config.nodes import parse_host_port

__all__ = [
    "ChallengeRateLimit",
    "ConfigError",
    "ConfigErrors",
    "GatewayConfig",
    "ListenConfig",
    "Listener",
    "LndConfig",
    "PathRewrite",
    "Route",
    "RouteTable",
    "StoreConfig",
    "TokenMode",
    "load_config",
    "parse_host_port",
]

"""Typed reads from PyYAML nodes that remember where every value came from.

The loader works on `yaml.compose` output instead of plain dicts so that each
error can name the line it is about. A failed read records an error and
returns a harmless default: loading continues and reports every problem at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from gateway.config.errors import ConfigError

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


MAX_NUMBER = 1e9  # seconds and similar: ~31 years; larger is a typo

# Aperture's (aperture.yaml) names for what this file calls otherwise: an operator
# porting a config by hand gets the right key instead of a bare "unknown key".
APERTURE_KEYS = {
    "hostregexp": "host",
    "pathregexp": "path",
    "address": "upstream",
    "price": "price_sats",
    "timeout": "token_validity_seconds",
    "headers": "upstream_headers",
    "services": "routes",
    "listenaddr": "listen",
    "authenticator": "lnd",
    "dbbackend": "store",
    "lndhost": "host",
    "tlspath": "tls_cert",
    "macdir": "macaroon",
    "ratelimits": "rate_limits",
    "dynamicprice": "pricing",
}


def unknown_key_message(key: str, allowed: frozenset[str]) -> str:
    """ "unknown key", with the key the operator probably meant when one is close."""
    aperture = APERTURE_KEYS.get(key.lower())
    if aperture is not None and aperture in allowed:
        return f"unknown key (Aperture's `{key}` is `{aperture}` here)"
    close = difflib.get_close_matches(key.lower(), sorted(allowed), n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    return "unknown key"


def line_of(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class Reader:
    """Shared state of one load: the file, the environment and the errors so far.

    `defer_env`: an unset `${VAR}` is not an error yet but *deferred*, and so is
    every later error about the same value (its real text is unknown). Operator
    commands load this way: `revoke` run by hand lacks the service's environment
    (upstream API keys, often the store password) and needs only some sections;
    each command then refuses only the deferred errors of the sections it uses.
    """

    def __init__(
        self,
        file: str,
        base_dir: Path,
        environ: Mapping[str, str],
        check_files: bool,
        *,
        defer_env: bool = False,
    ) -> None:
        self.file = file
        self.base_dir = base_dir
        self.environ = environ
        self.check_files = check_files
        self.defer_env = defer_env
        self.errors: list[ConfigError] = []
        self.deferred: list[ConfigError] = []
        self._unresolved: set[int] = set()  # id() of nodes whose value had an unset ${VAR}
        self._constructor = yaml.SafeLoader("")

    def error(self, where: yaml.Node | int, field: str, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        error = ConfigError(self.file, line, field, message)
        if not isinstance(where, int) and id(where) in self._unresolved:
            self.deferred.append(error)
        else:
            self.errors.append(error)

    def scalar(self, node: yaml.Node, field: str) -> tuple[bool, object]:
        """Construct a scalar's Python value; (False, None) after recording an error."""
        if not isinstance(node, yaml.ScalarNode):
            kind = "a mapping" if isinstance(node, yaml.MappingNode) else "a list"
            self.error(node, field, f"expected a single value, got {kind}")
            return False, None
        try:
            return True, self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.error(node, field, f"invalid value: {exc}")
            return False, None

    def interpolate(self, node: yaml.Node, field: str, text: str) -> str:
        """Replace ${VAR} from the environment; `$$` is a literal `$`."""

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:
                return "$"
            value = self.environ.get(name)
            if value is None:
                if self.defer_env:
                    self._unresolved.add(id(node))
                self.error(node, field, f"environment variable {name} is not set")
                return ""
            return value

        return _ENV_REF.sub(repl, text)

    def file_path(self, node: yaml.Node, field: str, text: str) -> Path:
        """Resolve against the config file's directory and, if asked, require the file."""
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        if self.check_files and not path.is_file():
            self.error(node, field, f"file not found: {path}")
        return path


class Section:
    """A YAML mapping with a fixed set of allowed keys; unknown keys are errors."""

    def __init__(
        self, reader: Reader, node: yaml.MappingNode, field: str, allowed: frozenset[str]
    ) -> None:
        self.reader = reader
        self.node = node
        self.field = field
        self._values: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            ok, key = reader.scalar(key_node, field or "<top level>")
            if not ok:
                continue
            if not isinstance(key, str):
                reader.error(key_node, self.path(str(key)), "keys must be strings")
            elif key in self._values:
                reader.error(key_node, self.path(key), "duplicate key")
            elif key not in allowed:
                reader.error(key_node, self.path(key), unknown_key_message(key, allowed))
            else:
                self._values[key] = value_node

    @classmethod
    def of(
        cls, reader: Reader, node: yaml.Node | None, field: str, allowed: frozenset[str]
    ) -> Section | None:
        """A section from a node; None (no error) for a missing or null node."""
        if node is None or is_null(node):
            return None
        if not isinstance(node, yaml.MappingNode):
            reader.error(node, field or "<top level>", "expected a mapping")
            return None
        return cls(reader, node, field, allowed)

    def path(self, key: str) -> str:
        return f"{self.field}.{key}" if self.field else key

    def get(self, key: str) -> yaml.Node | None:
        return self._values.get(key)

    def has(self, key: str) -> bool:
        return key in self._values

    def missing(self, key: str) -> None:
        self.reader.error(self.node, self.path(key), "required key is missing")

    def refuse(self, messages: Mapping[str, str]) -> None:
        """Record an error for each present key that this kind of configuration cannot use,
        and drop it, so that nothing reads it and each such key is reported once."""
        for key, message in messages.items():
            node = self._values.pop(key, None)
            if node is not None:
                self.reader.error(node, self.path(key), message)

    def _value(self, key: str, kinds: tuple[type, ...], what: str) -> tuple[bool, object]:
        """(True, value) when present and of a wanted type, (True, None) for null."""
        node = self._values.get(key)
        if node is None:
            return False, None
        ok, value = self.reader.scalar(node, self.path(key))
        if not ok or value is None:
            return ok, None
        # bool is a subclass of int: `price_sats: true` must not pass as 1.
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        if not ok or not isinstance(value, kinds):
            self.reader.error(node, self.path(key), f"expected {what}")
            return False, None
        return True, value

    def string(self, key: str, default: str, *, required: bool = False) -> str:
        found, value = self._value(key, (str,), "a string")
        if isinstance(value, str):
            return value
        if found:
            self.reader.error(self._values[key], self.path(key), "must not be null")
        elif required and key not in self._values:
            self.missing(key)
        return default

    def opt_string(self, key: str) -> str | None:
        _, value = self._value(key, (str,), "a string")
        return value if isinstance(value, str) else None

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self.opt_integer(key, default, minimum=minimum)
        if value is None:
            self.reader.error(self._values[key], self.path(key), "must not be null")
            return default
        return value

    def opt_integer(
        self, key: str, default: int | None, *, minimum: int | None = None
    ) -> int | None:
        if key not in self._values:
            return default
        found, value = self._value(key, (int,), "an integer")
        if not found or not isinstance(value, int):
            return None if found else default
        if minimum is not None and value < minimum:
            self.reader.error(self._values[key], self.path(key), f"must be >= {minimum}")
            return default
        return value

    def positive_number(self, key: str, default: float) -> float:
        found, value = self._value(key, (int, float), "a number")
        if not isinstance(value, int | float):
            if found:
                self.reader.error(self._values[key], self.path(key), "must not be null")
            return default
        # Compare before isfinite(): a 400-digit YAML integer would overflow it.
        if not 0 < value <= MAX_NUMBER or not math.isfinite(value):
            self.reader.error(
                self._values[key], self.path(key), f"must be > 0 and at most {MAX_NUMBER:g}"
            )
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        found, value = self._value(key, (bool,), "true or false")
        if isinstance(value, bool):
            return value
        if found:
            self.reader.error(self._values[key], self.path(key), "must not be null")
        return default

    def http_url(self, key: str, *, credentials_hint: str = "") -> str:
        """A required http(s) URL with a host, after ${VAR} interpolation: the one rule
        for every service the gateway calls (an upstream, a pricing hook). Credentials
        and queries are refused because they would end up in logs and metrics labels."""
        text = self.string(key, "", required=True)
        node = self.get(key)
        if node is None or not text:
            return text
        field = self.path(key)
        text = self.reader.interpolate(node, field, text)
        try:
            parts = urlsplit(text)
            port_ok = parts.port is None or parts.port > 0
        except ValueError as exc:
            self.reader.error(node, field, f"bad URL: {exc}")
            return text
        if parts.scheme not in ("http", "https"):
            self.reader.error(node, field, "scheme must be http or https")
        elif not parts.hostname or not port_ok:
            self.reader.error(node, field, "URL needs a host (and a valid port)")
        elif parts.username is not None or parts.password is not None:
            self.reader.error(node, field, f"no credentials in the URL{credentials_hint}")
        elif parts.query or parts.fragment:
            self.reader.error(node, field, "no query or fragment allowed")
        return text

    def string_list(self, key: str) -> list[tuple[str, yaml.Node]] | None:
        """Strings of a list with their nodes; None when absent or null."""
        node = self._values.get(key)
        if node is None or is_null(node):
            return None
        if not isinstance(node, yaml.SequenceNode):
            self.reader.error(node, self.path(key), "expected a list")
            return []
        items: list[tuple[str, yaml.Node]] = []
        for index, item in enumerate(node.value):
            field = f"{self.path(key)}[{index}]"
            ok, value = self.reader.scalar(item, field)
            if ok and isinstance(value, str):
                items.append((value, item))
            elif ok:
                self.reader.error(item, field, "expected a string")
        return items


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)


def parse_host_port(text: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError('expected "host:port"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif ":" in host:
        raise ValueError('IPv6 hosts need brackets: "[::1]:8402"')
    else:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if _HOSTNAME.fullmatch(host) is None:
                raise ValueError(f"bad host {host!r}") from None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port {port_text!r}")
    return host, int(port_text)


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"

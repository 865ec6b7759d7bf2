"""The operator's OpenAPI document (`discovery.openapi_file`): read once per load, checked.

The gateway serves it with every priced operation annotated (gateway.discovery.documents),
so what is loaded here must be safe to keep in memory and to re-encode as
JSON: the file is bounded in size, YAML aliases cannot expand it beyond a
bound on values and depth, every value must be representable in JSON (an
unquoted YAML date is an error, not a silent string), and the structure
OpenAPI 3 requires of what the gateway reads (`openapi`, `paths`, path items,
operations) is checked. Errors name the OpenAPI file and line, like every
other configuration error. JSON is read by the YAML parser too (JSON is
YAML's flow style), so JSON files get line numbers as well; the rare JSON
the YAML 1.1 parser refuses (`\\/` escapes) is read as plain JSON instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from gateway.config.errors import ConfigError
from gateway.config.nodes import line_of

MAX_OPENAPI_BYTES = 2 * 1024 * 1024
MAX_VALUES = 200_000  # after alias expansion: a "billion laughs" file stops here
MAX_DEPTH = 64
OPERATIONS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class _Stop(Exception):
    """A bound was exceeded; the error is already recorded."""


class OpenApiReader:
    """Reads one OpenAPI file into JSON-compatible values, collecting located errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.errors: list[ConfigError] = []
        self._constructor = yaml.SafeLoader("")
        self._values = 0

    def error(self, line: int, field: str, message: str) -> None:
        self.errors.append(ConfigError(self.file, line, field, message))

    def load(self) -> dict[str, Any] | None:
        text = self._read()
        if text is None:
            return None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            return self._plain_json(text, exc)
        if root is None:
            self.error(1, "", "the file is empty")
            return None
        try:
            value = self._value(root, "", 0)
        except _Stop:
            return None
        if not isinstance(value, dict):
            self.error(line_of(root), "", "expected an OpenAPI object (a mapping)")
            return None
        self._check(root, value)
        return value if not self.errors else None

    def _read(self) -> str | None:
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(MAX_OPENAPI_BYTES + 1)
        except OSError as exc:
            self.error(0, "", f"cannot read: {exc.strerror}")
            return None
        if len(raw) > MAX_OPENAPI_BYTES:
            self.error(0, "", f"larger than {MAX_OPENAPI_BYTES} bytes")
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.error(0, "", "not UTF-8 text")
            return None

    def _plain_json(self, text: str, yaml_error: yaml.YAMLError) -> dict[str, Any] | None:
        """JSON that YAML 1.1 refuses; YAML's own error when it is not JSON either."""
        try:
            value = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            if text.lstrip().startswith("{"):
                line = exc.lineno if isinstance(exc, json.JSONDecodeError) else 0
                self.error(line, "", f"JSON syntax: {exc}")
            else:
                mark = getattr(yaml_error, "problem_mark", None)
                line = mark.line + 1 if mark is not None else 0
                problem = getattr(yaml_error, "problem", None) or str(yaml_error)
                self.error(line, "", f"YAML syntax: {problem}")
            return None
        if not isinstance(value, dict):
            self.error(1, "", "expected an OpenAPI object (a mapping)")
            return None
        self._check(None, value)
        return value if not self.errors else None

    def _value(self, node: yaml.Node, field: str, depth: int) -> Any:
        self._values += 1
        if self._values > MAX_VALUES or depth > MAX_DEPTH:
            self.error(line_of(node), field, f"more than {MAX_VALUES} values or {MAX_DEPTH} levels")
            raise _Stop
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, field, depth)
        if isinstance(node, yaml.SequenceNode):
            return [
                self._value(item, f"{field}[{index}]", depth + 1)
                for index, item in enumerate(node.value)
            ]
        value = self._scalar(node, field)
        if isinstance(value, float) and not math.isfinite(value):
            self.error(line_of(node), field, "not a finite number (JSON has no NaN or infinity)")
        elif value is not None and not isinstance(value, str | int | float | bool):
            self.error(line_of(node), field, "not representable in JSON; quote it")
        return value

    def _scalar(self, node: yaml.Node, field: str) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid value"
            self.error(line_of(node), field, f"invalid value: {problem}")
            return None

    def _mapping(self, node: yaml.MappingNode, field: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.error(line_of(key_node), field, "YAML merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(line_of(key_node), field, "keys must be strings")
                continue
            key = self._scalar(key_node, field)
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)  # `200:` response codes
            if not isinstance(key, str):
                self.error(line_of(key_node), field, "keys must be strings")
                continue
            where = f"{field}.{key}" if field else key
            if key in result:
                self.error(line_of(key_node), where, "duplicate key")
                continue
            result[key] = self._value(value_node, where, depth + 1)
        return result

    def _check(self, root: yaml.Node | None, document: dict[str, Any]) -> None:
        """What the gateway relies on: an OpenAPI 3 version, and mappings where it walks."""
        lines = _Lines(root)
        version = document.get("openapi")
        if not isinstance(version, str) or not version.startswith("3."):
            message = "must be an OpenAPI 3.x document (`openapi: 3.1.0`)"
            if "swagger" in document:
                message = "Swagger 2.0 is not supported; convert it to OpenAPI 3"
            self.error(lines.of("openapi"), "openapi", message)
        paths = document.get("paths")
        if paths is None:
            return
        if not isinstance(paths, dict):
            self.error(lines.of("paths"), "paths", "expected a mapping")
            return
        for template, item in paths.items():
            where = f"paths.{template}"
            if not template.startswith("/"):
                self.error(lines.of("paths", template), where, "a path must start with /")
            if not isinstance(item, dict):
                self.error(lines.of("paths", template), where, "expected a path item (mapping)")
                continue
            for method in OPERATIONS:
                if method in item and not isinstance(item[method], dict):
                    line = lines.of("paths", template, method)
                    self.error(line, f"{where}.{method}", "expected an operation (mapping)")


class _Lines:
    """Line numbers of mapping keys along a path, when the document came from YAML nodes."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def of(self, *keys: str) -> int:
        node = self._root
        line = 1 if node is None else line_of(node)
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                return line
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and str(key_node.value) == key:
                    line, node = line_of(key_node), value_node
                    break
            else:
                return line
        return line


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:60]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_openapi(path: Path) -> tuple[dict[str, Any] | None, list[ConfigError]]:
    """The parsed document (None on any error) and the errors, each naming file:line."""
    reader = OpenApiReader(path)
    document = reader.load()
    return document, reader.errors

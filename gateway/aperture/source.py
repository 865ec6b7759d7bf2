"""Typed reads of Aperture's YAML configuration (`aperture.yaml`).

Aperture decodes its file with goccy/go-yaml into Go structs whose keys are
the lower-cased field names (`listenaddr`, `hostregexp`, `databasefilename`)
and silently ignores keys it does not know. We compare keys case-insensitively
and report unknown ones instead of ignoring them, so a typo that Aperture also
ignored (the sample's `dbfile`) is visible to the operator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.aperture.notes import Notes


class ApertureConfigError(Exception):
    """The input is not a usable Aperture configuration (the command exits 2)."""


class BadValue(Exception):
    """One setting has a value Aperture itself would refuse."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class Block:
    """One mapping of aperture.yaml, with the path used in notes (`services[2]`)."""

    def __init__(self, raw: Mapping[object, object], where: str) -> None:
        self.where = where
        self._values: dict[str, object] = {}
        self._spelling: dict[str, str] = {}
        for key, value in raw.items():
            text = str(key)
            self._values[text.lower()] = value
            self._spelling[text.lower()] = text

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        """Present and not null."""
        return self._values.get(key) is not None

    def keys(self) -> Iterator[str]:
        return iter(self._values)

    def spelled(self, key: str) -> str:
        return self._spelling.get(key, key)

    def raw(self, key: str) -> object:
        return self._values.get(key)

    def child(self, key: str) -> Block | None:
        value = self._values.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise BadValue(self.path(key), "expected a mapping")
        return Block(value, self.path(key))

    def text(self, key: str, default: str = "") -> str:
        value = self._values.get(key)
        if value is None:
            return default
        if isinstance(value, bool | Mapping | list):
            raise BadValue(self.path(key), "expected a string")
        return str(value)  # Go decodes a YAML number into a string field as its text

    def integer(self, key: str, default: int = 0) -> int:
        value = self._values.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadValue(self.path(key), "expected an integer")
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self._values.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise BadValue(self.path(key), "expected true or false")
        return value

    def strings(self, key: str) -> list[str]:
        value = self._values.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise BadValue(self.path(key), "expected a list")
        out = []
        for index, item in enumerate(value):
            if item is None or isinstance(item, bool | Mapping | list):
                raise BadValue(f"{self.path(key)}[{index}]", "expected a string")
            out.append(str(item))
        return out

    def string_map(self, key: str) -> dict[str, str]:
        value = self._values.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise BadValue(self.path(key), "expected a mapping")
        out: dict[str, str] = {}
        for name, item in value.items():
            if item is None or isinstance(item, Mapping | list):
                raise BadValue(f"{self.path(key)}.{name}", "expected a single value")
            out[str(name)] = _go_text(item)
        return out

    def report_unknown(self, known: frozenset[str], notes: Notes, hint: Mapping[str, str]) -> None:
        """A note for each key Aperture v0.5.0 does not read (it ignores them silently)."""
        for key in self._values:
            if key not in known:
                extra = f" ({hint[key]})" if key in hint else ""
                notes.note(
                    self.path(self.spelled(key)),
                    f"not an Aperture v0.5.0 setting, Aperture ignored it too{extra}",
                )


def _go_text(value: object) -> str:
    """A scalar as Go would print it into a string field (`true`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

"""`discovery:` in routes.yaml, the OpenAPI file checks (file:line errors, bounds), the routes
the loader refuses, and the pure helpers that describe routes (no I/O but files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import ConfigErrors, load_config
from gateway.config.model import DiscoveryConfig, GatewayConfig, Route
from gateway.config.openapi import MAX_OPENAPI_BYTES
from gateway.discovery.documents import example_path, literal_path

HEAD = """\
lnd: {tls_cert: c, macaroon: m}
"""


def _routes(*paths: str) -> str:
    lines = ["routes:\n"]
    for index, path in enumerate(paths):
        lines.append(
            f"  - {{name: r{index}, path: '{path}', upstream: 'http://127.0.0.1:9', "
            "price_sats: 1}\n"
        )
    return "".join(lines)


def load(tmp_path: Path, text: str) -> GatewayConfig:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return load_config(path, check_files=False)


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load(tmp_path, text)
    return [str(e).replace(str(tmp_path) + "/", "") for e in info.value.errors]


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, HEAD + _routes("^/a$"))
    assert config.discovery == DiscoveryConfig()
    assert config.discovery.paths == {"/.well-known/l402.json"}


def test_a_full_section(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text("openapi: 3.0.3\ninfo: {title: t, version: '1'}\n")
    pubkey = "03" + "ab" * 32
    config = load(
        tmp_path,
        HEAD + "discovery:\n  provider_name: Example API\n  provider_uri: https://api.example\n"
        f"  node_pubkey: '{pubkey}'\n  max_age_seconds: 0\n  openapi_file: api.yaml\n"
        + _routes("^/a$"),
    )
    found = config.discovery
    assert (found.provider_name, found.provider_uri, found.node_pubkey) == (
        "Example API",
        "https://api.example",
        pubkey,
    )
    assert found.max_age_seconds == 0
    assert found.openapi_file == tmp_path / "api.yaml"
    assert found.openapi == {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}}
    assert found.paths == {"/.well-known/l402.json", "/.well-known/l402-openapi.json"}


def test_section_errors(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        HEAD + "discovery:\n  provider_name: ''\n  provider_uri: ftp://x\n"
        "  node_pubkey: '04abc'\n  max_age_seconds: 100000\n  colour: red\n" + _routes("^/a$"),
    )
    assert found == [
        "routes.yaml:3: discovery.provider_name: 1 to 256 printable characters",
        "routes.yaml:4: discovery.provider_uri: an http(s) URL",
        "routes.yaml:5: discovery.node_pubkey: 66 lower-case hex digits (02... or 03...)",
        "routes.yaml:6: discovery.max_age_seconds: at most 86400 (one day)",
        "routes.yaml:7: discovery.colour: unknown key",
    ]


@pytest.mark.parametrize(
    "path",
    [r"^/\.well-known/l402\.json$", r"^/\.well-known/", r"\.json$", "l402"],
)
def test_a_route_aimed_at_the_manifest_is_refused(tmp_path: Path, path: str) -> None:
    found = errors(tmp_path, HEAD + _routes("^/a$", path))
    assert found == [
        "routes.yaml:4: routes[1].path: matches /.well-known/l402.json, which the gateway "
        "answers itself (discovery); narrow the pattern or set discovery.enabled: false"
    ]


@pytest.mark.parametrize("path", ["^/", ".*", "^/(.*)$", "", r"^/\.well-known/(?!l402)"])
def test_catch_alls_and_narrowed_patterns_are_accepted(tmp_path: Path, path: str) -> None:
    load(tmp_path, HEAD + _routes(path))


def test_disabled_discovery_refuses_nothing(tmp_path: Path) -> None:
    load(tmp_path, HEAD + "discovery: {enabled: false}\n" + _routes(r"^/\.well-known/l402\.json$"))


def test_the_openapi_path_is_reserved_only_when_served(tmp_path: Path) -> None:
    route = r"^/\.well-known/l402-openapi\.json$"
    load(tmp_path, HEAD + _routes(route))
    (tmp_path / "api.yaml").write_text("openapi: 3.1.0\n")
    found = errors(tmp_path, HEAD + "discovery: {openapi_file: api.yaml}\n" + _routes(route))
    assert len(found) == 1
    assert "matches /.well-known/l402-openapi.json" in found[0]


def _openapi_errors(tmp_path: Path, content: str | bytes, name: str = "api.yaml") -> list[str]:
    target = tmp_path / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    return errors(tmp_path, HEAD + f"discovery: {{openapi_file: {name}}}\n" + _routes("^/a$"))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('swagger: "2.0"\npaths: {}\n', "api.yaml:1: openapi: Swagger 2.0 is not supported"),
        ("info: {}\nopenapi: 2.0\n", "api.yaml:2: openapi: must be an OpenAPI 3.x document"),
        ("openapi: 3.1.0\ninfo:\n  version: 2024-01-01\n", "api.yaml:3: info.version: not "),
        ("openapi: 3.1.0\nx-n: .nan\n", "api.yaml:2: x-n: not a finite number"),
        ("openapi: 3.1.0\nopenapi: 3.0.0\n", "api.yaml:2: openapi: duplicate key"),
        ("openapi: 3.1.0\npaths: [1]\n", "api.yaml:2: paths: expected a mapping"),
        (
            "openapi: 3.1.0\npaths:\n  items: {}\n",
            "api.yaml:3: paths.items: a path must start with /",
        ),
        (
            "openapi: 3.1.0\npaths:\n  /a:\n    get: nope\n",
            "api.yaml:4: paths./a.get: expected an operation (mapping)",
        ),
        (
            "openapi: 3.1.0\nbase: &b {x: 1}\nother:\n  <<: *b\n",
            "api.yaml:4: other: YAML merge keys (<<) are not supported",
        ),
        ("openapi: 3.1.0\npaths: {\n", "api.yaml:3: YAML syntax"),
        ("- openapi\n", "api.yaml:1: expected an OpenAPI object (a mapping)"),
        ("", "api.yaml:1: the file is empty"),
        (b"openapi: \xff\n", "api.yaml:0: not UTF-8 text"),
        ("openapi: !!python/name:os.system\n", "api.yaml:1: openapi: invalid value"),
    ],
)
def test_openapi_errors_name_file_and_line(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    found = _openapi_errors(tmp_path, content)
    assert any(line.startswith(expected) for line in found), found


def test_json_syntax_errors_have_lines(tmp_path: Path) -> None:
    found = _openapi_errors(tmp_path, '{\n  "openapi": "3.1.0",\n  "paths": [}\n', "api.json")
    assert len(found) == 1
    assert re.match(r"api\.json:3: JSON syntax: ", found[0]), found


def test_json_the_yaml_parser_refuses_is_read_as_json(tmp_path: Path) -> None:
    (tmp_path / "api.json").write_text('{"openapi": "3.1.0", "x-url": "http:\\/\\/example"}')
    config = load(tmp_path, HEAD + "discovery: {openapi_file: api.json}\n" + _routes("^/a$"))
    assert config.discovery.openapi == {"openapi": "3.1.0", "x-url": "http://example"}


def test_a_large_file_is_refused(tmp_path: Path) -> None:
    padding = "x" * (MAX_OPENAPI_BYTES + 1)
    found = _openapi_errors(tmp_path, f"openapi: 3.1.0\nx-pad: {padding}\n")
    assert found == [f"api.yaml:0: larger than {MAX_OPENAPI_BYTES} bytes"]


def test_an_alias_bomb_stops_at_the_bound(tmp_path: Path) -> None:
    lines = ["openapi: 3.1.0", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):  # 10**9 values once expanded
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    found = _openapi_errors(tmp_path, "\n".join(lines) + "\n")
    assert len(found) == 1
    assert "more than 200000 values" in found[0]


def test_a_missing_file_is_an_error_when_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    (tmp_path / "c").touch()
    (tmp_path / "m").touch()
    path.write_text(HEAD + "discovery: {openapi_file: nowhere.yaml}\n" + _routes("^/a$"))
    with pytest.raises(ConfigErrors, match=r"discovery\.openapi_file: file not found"):
        load_config(path)


def _route(path: str) -> Route:
    return Route("r", re.compile(path), "http://u", 1)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("^/ep212/premium-signal$", "/ep212/premium-signal"),
        (r"^/v1/data\.json$", "/v1/data.json"),
        (r"\A/a\Z", "/a"),
        ("^/v1/data.json$", "/v1/data.json"),  # an unescaped dot is taken as itself
        ("^/paid", None),  # a prefix, not one path
        ("/exact$", None),  # unanchored at the start
        (r"^/items/\d+$", None),
        ("^/(a|b)$", None),
        ("^/a?$", None),
        (r"^/cost\$$", "/cost$"),
        (r"^/a\$", None),  # ends with an escaped $: not anchored
    ],
)
def test_literal_path(pattern: str, literal: str | None) -> None:
    assert literal_path(_route(pattern)) == literal


def test_example_path() -> None:
    params = [
        {"name": "id", "in": "path", "schema": {"type": "integer"}},
        {"name": "slug", "in": "path", "example": "hello"},
        {"name": "kind", "in": "path", "schema": {"enum": ["big", "small"]}},
        {"name": "v", "in": "path", "schema": {"type": "string", "default": "v2"}},
        {"name": "q", "in": "query", "example": "never"},
    ]
    template = "/a/{id}/{slug}/{kind}/{v}/{other}/{q}"
    assert example_path(template, params) == "/a/1/hello/big/v2/x/x"

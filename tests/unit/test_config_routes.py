"""Route matching order, host/method/path semantics, shadowing and duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigErrors, RouteTable, load_config
from gateway.proxy.target import ProxyTarget

HEAD = """\
lnd: {tls_cert: c, macaroon: m}
routes:
"""


def route(name: str, path: str, *, extra: str = "", price: int = 10) -> str:
    return (
        f"  - name: {name}\n    path: '{path}'\n    upstream: 'https://up.example/{name}'\n"
        f"    price_sats: {price}\n{extra}"
    )


def table(tmp_path: Path, *routes: str) -> RouteTable:
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + "".join(routes))
    return load_config(path, check_files=False).routes


def shadow_error(tmp_path: Path, *routes: str) -> tuple[str, int, str]:
    path = tmp_path / "routes.yaml"
    path.write_text(HEAD + "".join(routes))
    with pytest.raises(ConfigErrors) as info:
        load_config(path, check_files=False)
    (error,) = info.value.errors
    return error.field, error.line, error.message


def test_first_match_wins(tmp_path: Path) -> None:
    routes = table(
        tmp_path,
        route("premium", "^/ep212/premium-signal$"),
        route("ep212", "^/ep212/"),
        route("rest", ".*", price=0),
    )
    assert routes.match("h", "/ep212/premium-signal", "GET").name == "premium"  # type: ignore[union-attr]
    assert routes.match("h", "/ep212/premium-signal/x", "GET").name == "ep212"  # type: ignore[union-attr]
    assert routes.match("h", "/other", "GET").name == "rest"  # type: ignore[union-attr]
    assert routes.names == ("premium", "ep212", "rest")


def test_path_uses_search_semantics(tmp_path: Path) -> None:
    routes = table(tmp_path, route("loose", "signal"))
    assert routes.match("h", "/ep212/premium-signal?x", "GET") is not None
    assert routes.match("h", "/nothing", "GET") is None


def test_host_matches_hostname_without_port(tmp_path: Path) -> None:
    extra = "    host: '^l402\\.openagents\\.com$'\n"
    routes = table(tmp_path, route("a", "^/a$", extra=extra))
    assert routes.match("l402.openagents.com", "/a", "GET") is not None
    assert routes.match("L402.OpenAgents.com:8443", "/a", "GET") is not None
    assert routes.match("l402.openagents.com.evil", "/a", "GET") is None
    assert routes.match("", "/a", "GET") is None


def test_ipv6_host_header(tmp_path: Path) -> None:
    routes = table(tmp_path, route("a", "^/a$", extra="    host: '^::1$'\n"))
    assert routes.match("[::1]:8080", "/a", "GET") is not None


def test_methods_filter(tmp_path: Path) -> None:
    routes = table(
        tmp_path,
        route("reads", "^/a$", extra="    methods: [get, HEAD]\n"),
        route("writes", "^/a$", extra="    methods: [POST]\n"),
    )
    assert routes.match("h", "/a", "GET").name == "reads"  # type: ignore[union-attr]
    assert routes.match("h", "/a", "post").name == "writes"  # type: ignore[union-attr]
    assert routes.match("h", "/a", "DELETE") is None


def test_path_rewrite(tmp_path: Path) -> None:
    extra = "    path_rewrite: {pattern: '^/ep212', replacement: ''}\n"
    (only,) = table(tmp_path, route("a", "^/ep212/", extra=extra)).routes
    assert only.path_rewrite is not None
    # Applied by the proxy target built from the route, first occurrence only.
    target = ProxyTarget.for_route(only)
    url = target.url_for("/ep212/premium-signal/ep212", "x=1")
    assert url.raw_path.endswith("/premium-signal/ep212")
    assert url.raw_query_string == "x=1"


def test_duplicate_names(tmp_path: Path) -> None:
    field, line, message = shadow_error(tmp_path, route("a", "^/a$"), route("a", "^/b$"))
    assert (field, line) == ("routes[1].name", 7)
    assert "duplicate name (also on line 3)" in message


def test_identical_route_is_shadowed(tmp_path: Path) -> None:
    field, line, message = shadow_error(tmp_path, route("a", "^/a$"), route("b", "^/a$"))
    assert (field, line) == ("routes[1].path", 8)
    assert "never matches" in message
    assert "'a'" in message


@pytest.mark.parametrize("catch_all", [".*", "^/", "^/.*", "", "^.*$"])
def test_catch_all_shadows_everything_after_it(tmp_path: Path, catch_all: str) -> None:
    field, _, message = shadow_error(tmp_path, route("all", catch_all), route("b", "^/b$"))
    assert field == "routes[1].path"
    assert "never matches" in message


def test_catch_all_with_a_host_shadows_only_that_host(tmp_path: Path) -> None:
    host = "    host: '^a\\.example$'\n"
    field, _, _ = shadow_error(
        tmp_path, route("all", ".*", extra=host), route("b", "^/b$", extra=host)
    )
    assert field == "routes[1].path"
    # A different host, or any host, is still reachable.
    other = "    host: '^b\\.example$'\n"
    assert len(table(tmp_path, route("all", ".*", extra=host), route("b", "^/b$"))) == 2
    assert len(table(tmp_path, route("all", ".*", extra=host), route("b", ".*", extra=other))) == 2


def test_method_subsets_decide_shadowing(tmp_path: Path) -> None:
    get = "    methods: [GET]\n"
    both = "    methods: [GET, POST]\n"
    # Earlier GET-only does not shadow a later GET+POST route.
    assert len(table(tmp_path, route("a", "^/a$", extra=get), route("b", "^/a$", extra=both))) == 2
    # Earlier GET+POST shadows a later GET-only one.
    field, _, _ = shadow_error(
        tmp_path, route("a", "^/a$", extra=both), route("b", "^/a$", extra=get)
    )
    assert field == "routes[1].path"


def test_catch_all_last_is_fine(tmp_path: Path) -> None:
    routes = table(tmp_path, route("a", "^/a$"), route("rest", "^/", price=0))
    assert len(routes) == 2


def test_config_and_proxy_agree_on_upstream_headers(tmp_path: Path) -> None:
    """One rule: what the loader accepts, the proxy target accepts, and the reverse."""
    allowed = (
        "    forward_authorization: false\n    upstream_headers: {Authorization: 'Bearer k'}\n"
    )
    (only,) = table(tmp_path, route("a", "^/a$", extra=allowed)).routes
    assert dict(ProxyTarget.for_route(only).extra_headers) == {"Authorization": "Bearer k"}

    for header, message in [
        ("Host", "set by the gateway itself"),
        ("X-Real-IP", "set by the gateway itself"),
        ("Proxy-Authorization", "hop-by-hop"),
        ("Macaroon", "credential header"),
    ]:
        extra = f"    upstream_headers: {{{header}: x}}\n"
        path = tmp_path / "routes.yaml"
        path.write_text(HEAD + route("a", "^/a$", extra=extra))
        with pytest.raises(ConfigErrors) as info:
            load_config(path, check_files=False)
        (error,) = info.value.errors
        assert error.field == f"routes[0].upstream_headers.{header}"
        assert message in error.message

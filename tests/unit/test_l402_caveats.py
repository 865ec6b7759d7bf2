"""Caveat building and enforcement (services, capabilities, valid_until, preimage)."""

from __future__ import annotations

import pytest

from gateway.l402 import caveats
from gateway.l402.errors import L402Error, Reason

NOW = 1_700_000_000


def _reason(cavs: list[str], service: str = "svc", cap: str | None = None, **kw: object) -> Reason:
    with pytest.raises(L402Error) as info:
        caveats.enforce(cavs, service, cap, NOW, **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_for_route_full_and_minimal() -> None:
    assert caveats.for_route("svc", ["read", "write"], 1800) == [
        "services=svc:0",
        "svc_capabilities=read,write",
        "svc_valid_until=1800",
    ]
    assert caveats.for_route("svc", [], None) == ["services=svc:0"]
    assert caveats.for_route("svc", (), 0) == ["services=svc:0", "svc_valid_until=0"]


@pytest.mark.parametrize("service", ["", "a b", "a,b", "a:b", "a=b", "a\nb"])
def test_names_that_break_caveat_syntax_are_refused(service: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        caveats.check_names(service, [])


def test_bad_capability_and_negative_time_are_refused() -> None:
    with pytest.raises(ValueError, match="capability"):
        caveats.check_names("svc", ["a,b"])
    caveats.check_names("svc", ["read", "write.all"])  # fine
    with pytest.raises(ValueError, match="negative"):
        caveats.for_route("svc", [], -1)


def test_minted_caveats_pass_and_return_deadline() -> None:
    cavs = caveats.for_route("svc", ["read"], NOW + 60)
    assert caveats.enforce(cavs, "svc", "read", NOW) == NOW + 60
    assert caveats.enforce(cavs, "svc", None, NOW) == NOW + 60
    assert caveats.enforce(["services=svc:0"], "svc", None, NOW) is None


def test_wrong_route() -> None:
    assert _reason(["services=other:0"]) is Reason.WRONG_ROUTE


def test_no_services_caveat_is_wrong_route() -> None:
    assert _reason([]) is Reason.WRONG_ROUTE
    assert _reason(["svc_valid_until=1800000000"]) is Reason.WRONG_ROUTE


def test_services_list_and_narrowing() -> None:
    assert caveats.enforce(["services=a:0,svc:1"], "svc", None, NOW) is None
    narrowed = ["services=a:0,svc:0", "services=a:0"]
    assert caveats.enforce(narrowed, "a", None, NOW) is None
    assert _reason(narrowed, "svc") is Reason.WRONG_ROUTE


def test_widening_services_caveat_has_no_effect() -> None:
    widened = ["services=a:0", "services=a:0,svc:0"]
    assert caveats.enforce(widened, "a", None, NOW) is None
    assert _reason(widened, "svc") is Reason.WRONG_ROUTE


def test_expiry_boundary() -> None:
    cavs = ["services=svc:0", f"svc_valid_until={NOW}"]
    assert caveats.enforce(cavs, "svc", None, NOW) == NOW
    with pytest.raises(L402Error) as info:
        caveats.enforce(cavs, "svc", None, NOW + 1)
    assert info.value.reason is Reason.EXPIRED


def test_valid_until_earlier_wins_later_cannot_extend() -> None:
    earlier = ["services=svc:0", f"svc_valid_until={NOW + 100}", f"svc_valid_until={NOW - 1}"]
    assert _reason(earlier) is Reason.EXPIRED
    later = ["services=svc:0", f"svc_valid_until={NOW - 1}", f"svc_valid_until={NOW + 100}"]
    assert _reason(later) is Reason.EXPIRED
    fine = ["services=svc:0", f"svc_valid_until={NOW + 100}", f"svc_valid_until={NOW + 50}"]
    assert caveats.enforce(fine, "svc", None, NOW) == NOW + 50


def test_other_services_caveats_are_ignored() -> None:
    cavs = [
        "services=svc:0,other:0",
        f"other_valid_until={NOW - 1000}",
        "other_capabilities=nothing",
    ]
    assert caveats.enforce(cavs, "svc", None, NOW) is None


def test_capabilities() -> None:
    cavs = ["services=svc:0", "svc_capabilities=read, write"]
    assert caveats.enforce(cavs, "svc", "write", NOW) is None
    assert _reason(cavs, cap="admin") is Reason.MISSING_CAPABILITY
    narrowed = [*cavs, "svc_capabilities=read"]
    assert caveats.enforce(narrowed, "svc", "read", NOW) is None
    assert _reason(narrowed, cap="write") is Reason.MISSING_CAPABILITY
    widened = ["services=svc:0", "svc_capabilities=read", "svc_capabilities=read,admin"]
    assert _reason(widened, cap="admin") is Reason.MISSING_CAPABILITY


def test_required_capability_fails_closed_without_capabilities_caveat() -> None:
    assert _reason(["services=svc:0"], cap="read") is Reason.MISSING_CAPABILITY


def test_unknown_condition_fails_verification() -> None:
    with pytest.raises(L402Error) as info:
        caveats.enforce(["services=svc:0", "ip_address=10.0.0.1"], "svc", None, NOW)
    assert info.value.reason is Reason.MALFORMED
    assert "ip_address" in info.value.detail
    assert "10.0.0.1" not in info.value.detail


@pytest.mark.parametrize(
    "bad",
    [
        "no-equals-sign",
        "=value",
        "services=",
        "services=svc",
        "services=svc:x",
        "services=,svc:0",
        "svc_valid_until=soon",
        "svc_valid_until=-5",
        "svc_valid_until=" + "9" * 5000,
        "other_valid_until=never",
        "preimage=abc",
    ],
)
def test_malformed_known_caveats(bad: str) -> None:
    assert _reason(["services=svc:0", bad]) is Reason.MALFORMED


def test_whitespace_around_condition_and_value_is_trimmed() -> None:
    assert caveats.enforce([" services = svc:0 "], "svc", None, NOW) is None


def test_preimage_caveat() -> None:
    preimage = bytes(range(32))
    cavs = ["services=svc:0", "preimage=" + preimage.hex().upper()]
    assert caveats.enforce(cavs, "svc", None, NOW, preimage=preimage) is None
    assert caveats.enforce(cavs, "svc", None, NOW) is None
    assert _reason(cavs, preimage=b"\x00" * 32) is Reason.PREIMAGE_MISMATCH

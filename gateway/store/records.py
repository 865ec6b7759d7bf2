"""The token record the store keeps: defined by the core (gateway.l402), re-exported here."""

from gateway.l402.records import TokenRecord

__all__ = ["TokenRecord"]

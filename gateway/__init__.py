"""Aperture-compatible L402 payment gateway."""

__version__ = "0.1.0"

"""The `l402-gateway` subcommands, one module per concern (gateway.cli wires them)."""

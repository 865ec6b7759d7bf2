"""The LND implementation of the Lightning backend (grpc.aio)."""

"""LND's gRPC wire, sans I/O: protobuf fields, LND's messages, gRPC framing, HTTP/2 frames.

Pure functions over bytes, tested without sockets; the connection
(gateway.lightning.lnd.h2conn) and the seller's client (gateway.lightning.lnd.seller)
do the I/O. Written from the protobuf encoding rules, gRPC's HTTP/2 protocol
description, RFC 9113 and LND's own field numbers (protos/lightning.proto).
"""

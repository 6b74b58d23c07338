"""RTMP: the sans-IO protocol core (handshake, chunks, AMF, FLV payloads, connection) and
its asyncio adapters."""

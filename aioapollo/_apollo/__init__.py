"""Talking to Apollo: the wire protocol, HTTP transport, discovery, the disk cache, and the
Apollo source (long poll and fetch). Private: nothing here is public API."""

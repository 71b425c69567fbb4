"""HTTP: the Wallet API (raw ASGI, the hot path), the operator API, health and metrics."""

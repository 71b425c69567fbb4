"""Monitoring that plugs in: the metrics the workers export, and the Prometheus rules and the
Grafana dashboard built from them (package data; ``qwallet monitoring rules|dashboard``).

See ``docs/operations.md`` (Monitoring).
"""

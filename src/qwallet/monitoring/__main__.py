"""``python -m qwallet.monitoring rules|dashboard`` (the same as ``qwallet monitoring …``)."""

from qwallet.monitoring.command import monitoring_app

monitoring_app(prog_name="qwallet monitoring")

"""Logs on stderr, for a machine or for a person, with the request id where there is one.

Three formats (``--log-format`` on ``serve``, ``demo`` and ``demo-partner``, or
``QWALLET_LOG_FORMAT``):

- ``json``: one JSON object per line (``ts``, ``level``, ``logger``, ``message``, then every
  ``extra=`` field), for a log collector;
- ``text``: one line a person reads, ``HH:MM:SS.mmm LEVEL logger message key=value…`` in UTC,
  coloured when stderr is a terminal (and ``NO_COLOR`` is not set);
- ``auto`` (the default): ``text`` when stderr is a terminal, ``json`` otherwise — a service
  manager or a pipe gets JSON, an operator at a shell gets lines to read.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}

ENV_VAR = "QWALLET_LOG_FORMAT"
# How ``serve --workers N`` hands its ``--log-level`` to the worker processes it starts.
LEVEL_ENV_VAR = "QWALLET_LOG_LEVEL"


class LogFormat(enum.StrEnum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_LEVEL_COLOURS = {
    "DEBUG": "\x1b[2m",  # dim
    "INFO": "\x1b[32m",  # green
    "WARNING": "\x1b[33m",  # yellow
    "ERROR": "\x1b[1;31m",  # bold red
    "CRITICAL": "\x1b[1;41m",  # bold on red
}
_DIM, _RESET = "\x1b[2m", "\x1b[0m"


class TextFormatter(logging.Formatter):
    """``23:54:05.123 INFO  qwallet.resolver hold … → confirmed request_id=…``."""

    def __init__(self, *, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}"
        level = f"{record.levelname:<5}"
        name = record.name
        if self.colour:
            level = f"{_LEVEL_COLOURS.get(record.levelname, '')}{level}{_RESET}"
            name = f"{_DIM}{name}{_RESET}"
        line = f"{stamp} {level} {name} {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{key}={_text_value(value)}" for key, value in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    # Quote what would otherwise run into the next field, so a line still splits into key=value.
    return json.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


def resolve(log_format: LogFormat | str, stream: TextIO | None = None) -> LogFormat:
    """``auto`` → ``text`` on a terminal, ``json`` otherwise; ``ValueError`` for an unknown name."""
    chosen = LogFormat(str(log_format).lower())
    if chosen is not LogFormat.AUTO:
        return chosen
    return LogFormat.TEXT if _is_terminal(stream or sys.stderr) else LogFormat.JSON


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def configure(level: str = "info", log_format: LogFormat | str = LogFormat.JSON) -> None:
    """Send every logger's records to stderr in ``log_format`` at ``level`` and above."""
    stream = sys.stderr
    chosen = resolve(log_format, stream)
    handler = logging.StreamHandler(stream)
    if chosen is LogFormat.TEXT:
        colour = _is_terminal(stream) and not os.environ.get("NO_COLOR")
        handler.setFormatter(TextFormatter(colour=colour))
    else:
        handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

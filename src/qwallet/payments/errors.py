"""Why a payment request was refused; the web layer maps ``status`` to the HTTP status."""

from __future__ import annotations


class PaymentError(Exception):
    """A refused payment request. ``reason`` is a stable code, the message is for people."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def as_json(self) -> dict[str, str]:
        return {"error": self.reason, "message": self.message}


def not_found() -> PaymentError:
    # Another player's order is as unknown as a made-up id: its existence is never revealed.
    return PaymentError(404, "not_found", "No such payment order.")

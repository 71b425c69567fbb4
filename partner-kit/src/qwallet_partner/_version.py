"""The kit's own version: ``qwallet-partner`` is released apart from the platform."""

__version__ = "0.1.0"

"""Domain errors of the model server. Each carries its HTTP status; ``http.py`` maps them in one place."""

from __future__ import annotations


class ServerError(Exception):
    """Base class: ``status`` is the HTTP status, ``str(exc)`` the message sent to the client."""

    status = 500


class InvalidInput(ServerError):
    """The request does not match the protocol or the model's signature."""

    status = 400


class ModelNotFound(ServerError):
    """The request names a model or version this server does not serve."""

    status = 404


class PayloadTooLarge(ServerError):
    """The request body exceeds the configured limit."""

    status = 413


class RequestMemoryExceeded(PayloadTooLarge):
    """Running the request would need more memory than one request may use (its batch is too large)."""


class NotReady(ServerError):
    """The model is not loaded (yet, or it failed to load)."""

    status = 503

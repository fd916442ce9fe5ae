"""The one error type the HTTP layer turns into a JSON answer with a status code."""

from __future__ import annotations

from ..errors import PrimeDepthError

__all__ = ["ApiError"]


class ApiError(PrimeDepthError):
    """A request the server refuses or cannot answer: HTTP `status`, a machine-readable `kind`
    (also the label of the errors metric), the message for people, and `retry_after` seconds
    for 503s (sent as the Retry-After header)."""

    def __init__(self, status: int, kind: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.retry_after = retry_after

    def payload(self) -> dict[str, object]:
        """The JSON body of the answer."""
        return {"error": self.kind, "message": self.message, "status": self.status}

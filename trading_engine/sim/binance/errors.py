"""The venue's error answers: an HTTP status and ``{"code": ..., "msg": ...}``."""

from __future__ import annotations

__all__ = ["VenueError"]


class VenueError(Exception):
    """An error answer of the simulated venue.

    ``status`` is the HTTP status (400 for a refused request, 401 for a bad
    key, 429 and 418 for limits, 5xx for the venue's own failures); ``code``
    and ``msg`` are the venue's error code and message; ``headers`` are
    added to the answer (``Retry-After``).
    """

    def __init__(
        self, status: int, code: int, msg: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}

"""How calls authenticate: `authorization: Bearer <api key or token>`."""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

Metadata = Tuple[Tuple[str, str], ...]

Token = Union[str, Callable[[], str]]


class Auth:
    """The authorization metadata of every call: an API key, a token, or a callable giving
    a fresh token (e.g. a JWT from AuthService.IssueToken, for calls through the mesh edge)."""

    def __init__(self, api_key: Optional[str], token: Optional[Token]) -> None:
        credential = token or api_key
        if not credential:
            raise ValueError("an api_key or token is needed")
        self._credential = credential

    def __call__(self) -> Metadata:
        value = self._credential() if callable(self._credential) else self._credential
        return (("authorization", f"Bearer {value}"),)

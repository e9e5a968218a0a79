"""HTTP basic auth for the API (`--api-auth user:pass[,user2:pass2]`), as A1111 applies it to every API route.

`make_authenticator(credentials)` returns a FastAPI dependency that answers the signed-in user name, or None when
no credentials are configured (auth off: then it declares no security scheme and ignores any Authorization header,
as A1111 does). A wrong or missing login is a 401 with `WWW-Authenticate: Basic`, so
browsers and clients know to ask. Passwords are compared in constant time, over every configured user.
"""

from __future__ import annotations

import secrets
from typing import Callable, Optional

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from modules.cli import Credentials
from modules.jobs import fair_group

Authenticator = Callable[..., Optional[str]]


def client_group(user: Optional[str], request: Request) -> Optional[str]:
    """The job queue's round-robin group of an API caller: the --api-auth user, else the client's address (so two
    clients without auth still take turns); see `modules.jobs.fair_group`."""
    return fair_group(user, request.client.host if request.client is not None else None)


def _matches(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_login(credentials: Credentials, username: str, password: str) -> bool:
    """True when (username, password) is one of the configured pairs."""
    found = False
    for user, expected in credentials:
        # `&` (not `and`): every pair is compared, so timing does not tell which user names exist.
        found |= _matches(username, user) & _matches(password, expected)
    return found


def make_authenticator(credentials: Credentials) -> Authenticator:
    """The dependency for API routes; see the module doc."""
    if not credentials:  # auth off: no security scheme at all, so an Authorization header is ignored (A1111)
        def no_login() -> Optional[str]:
            return None
        return no_login
    security = HTTPBasic(auto_error=False, description="Required when the server runs with --api-auth.")

    def authenticate(login: Optional[HTTPBasicCredentials] = Depends(security)) -> Optional[str]:
        if login is None or not check_login(credentials, login.username, login.password):
            raise HTTPException(status_code=401, detail="Incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})
        return login.username

    return authenticate

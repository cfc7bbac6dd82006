"""Who may change anything: nobody unless the app was started with actions allowed; then
whoever shows the token. A browser logs in once (`/login`) and gets a session cookie
(HttpOnly, SameSite=Strict); each of its state-changing requests also carries the
session's CSRF token (a hidden form field `csrf`, or the `X-CSRF-Token` header). An API
client sends `Authorization: Bearer <token>` instead, which no other site can make a
browser send.

Sessions are stateless: the cookie is a random nonce and its HMAC under a key made when
the app starts (a restart logs everyone out), and the CSRF token is another HMAC of the
same nonce, so a page of another session, or another site, cannot guess it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import HTTPException, Request

COOKIE = "livingai_session"
CSRF_HEADER = "X-CSRF-Token"


class Guard:
    """Checks the token, sessions and CSRF tokens of one app."""

    def __init__(self, allow_actions: bool, token: str | None) -> None:
        self.allow_actions = allow_actions
        self.token = token
        self.key = hashlib.sha256(secrets.token_bytes(32) + (token or "").encode()).digest()

    def _sign(self, purpose: str, nonce: str) -> str:
        return hmac.new(self.key, f"{purpose}|{nonce}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            given.encode("utf-8", "replace"), self.token.encode()
        )

    def new_session(self) -> str:
        """A session cookie's value, for a browser that showed the token."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign('session', nonce)}"

    def session_nonce(self, request: Request) -> str | None:
        """The nonce of the request's session, when its cookie is one of ours."""
        cookie = request.cookies.get(COOKIE, "")
        nonce, _, signature = cookie.partition(".")
        if not nonce or not hmac.compare_digest(signature, self._sign("session", nonce)):
            return None
        return nonce

    def csrf_token(self, request: Request) -> str:
        """The CSRF token of the request's session ("" without a session)."""
        nonce = self.session_nonce(request)
        return "" if nonce is None else self._sign("csrf", nonce)

    def logged_in(self, request: Request) -> bool:
        return self.allow_actions and self.session_nonce(request) is not None

    def check(self, request: Request, csrf: str | None = None) -> None:
        """Nothing unless the app allows actions (403) and the request shows the token
        (401): as a bearer token, or as a session with its CSRF token (`csrf` from a
        form, else the header; 403 when it is wrong)."""
        if not self.allow_actions:
            raise HTTPException(
                403, "read-only: this UI was started without --allow-actions, so nothing can change"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            if self.token_matches(given.strip()):
                return
            raise unauthorized("the bearer token is wrong")
        nonce = self.session_nonce(request)
        if nonce is None:
            raise unauthorized(
                "not logged in: log in at /login with the token, or send it as a bearer token"
            )
        shown = csrf if csrf is not None else request.headers.get(CSRF_HEADER, "")
        if not shown or not hmac.compare_digest(shown, self._sign("csrf", nonce)):
            raise HTTPException(
                403, "the CSRF token is missing or wrong: reload the page and try again"
            )


def unauthorized(why: str) -> HTTPException:
    """401: the request shows no token, or a wrong one (RFC 6750: say how to show it)."""
    return HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})

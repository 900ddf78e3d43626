"""Optuna Dashboard, served read-only and behind a token: a loopback port is shared by every user of the
machine, and the dashboard's own API deletes studies and edits notes with no login.

What Optuna Dashboard does not do, and is written here (a WSGI wrapper around its own app): requests other
than GET and HEAD are refused, and every request needs the token, given once in the URL (`?token=...`) and
then carried by a cookie the page's own requests send back.
"""

from __future__ import annotations

import hmac
import os
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

TOKEN = "SEVENSTEP_DASHBOARD_TOKEN"  # how `sweep --dashboard` hands its token to the server's process
COOKIE = "sevenstep_dashboard"


def token() -> str:
    return os.environ.get(TOKEN) or secrets.token_urlsafe(18)


def guarded(app, token: str):
    """`app` for requests that carry `token` and only read."""

    def refuse(start_response, status: str, text: str):
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode()]

    def guard(environ, start_response):
        given = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        carried = cookie[COOKIE].value if COOKIE in cookie else ""
        if not (hmac.compare_digest(given, token) or hmac.compare_digest(carried, token)):
            return refuse(
                start_response, "403 Forbidden", "this dashboard needs the token its command printed\n"
            )
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return refuse(
                start_response, "405 Method Not Allowed", "sevenstep serves this dashboard read-only\n"
            )

        def with_cookie(status, headers, *rest):
            if given:
                headers = [*headers, ("Set-Cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict")]
            return start_response(status, headers, *rest)

        return app(environ, with_cookie)

    return guard


def serve(storage, port: int, token: str) -> None:
    """Blocks, serving on 127.0.0.1:`port`; the request log is not printed (it would bury the sweep's lines)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna_dashboard import wsgi

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    with make_server("127.0.0.1", port, guarded(wsgi(storage), token), handler_class=Quiet) as server:
        server.serve_forever()

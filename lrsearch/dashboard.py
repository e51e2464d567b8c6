"""optuna-dashboard on a study database, with the artifact store wired in.

optuna-dashboard has no authentication and lets every visitor delete a study: :func:`serve`
binds to loopback by default, warns loudly when bound elsewhere, and ``read_only`` answers
``403 Forbidden`` to every request other than GET and HEAD.

:func:`wrap_long_lines` adds one CSS rule to the dashboard's HTML page: optuna-dashboard prints
each user attribute on one unbreakable line, and a trial's ``schedule`` and ``history``
attributes would otherwise push its page (and the artifact pictures under them) thousands of
pixels to the right.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["is_loopback", "make_app", "read_only", "serve", "wrap_long_lines"]

SAFE_METHODS = ("GET", "HEAD")
EXPOSED_WARNING = (
    "WARNING: the dashboard listens on {host}, not on loopback. optuna-dashboard has no "
    "authentication: anyone who can reach port {port} can read every study{and_delete}."
)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wraps a WSGI app so every method other than GET/HEAD is answered ``403 Forbidden``."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method in SAFE_METHODS:
            return app(environ, start_response)
        body = json.dumps(
            {"reason": f"read-only dashboard (lrsearch dashboard --read-only): {method} refused"}
        ).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


WRAP_CSS = (
    b"<style>/* lrsearch: wrap long attribute lines */ "
    b"p.MuiTypography-body1 { white-space: normal !important; overflow-wrap: anywhere; }</style>"
)


def wrap_long_lines(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """Wraps a WSGI app so its HTML pages carry :data:`WRAP_CSS` (other responses unchanged)."""

    def styled(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() != "GET":
            return app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None  # the legacy write() callable; bottle doesn't use it

        body = app(environ, capture)
        if not captured:  # an app may call start_response on the first iteration
            original = body
            body = list(original)
            close = getattr(original, "close", None)
            if close is not None:
                close()
        headers = captured["headers"]
        content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
        if not content_type.startswith("text/html"):
            start_response(captured["status"], headers, captured["exc_info"])
            return body
        try:
            page = b"".join(body)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        page = page.replace(b"</head>", WRAP_CSS + b"</head>", 1)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(page))))
        start_response(captured["status"], headers, captured["exc_info"])
        return [page]

    return styled


def make_app(storage_url: str, artifact_store: Any = None, *, readonly: bool = False) -> Any:
    """The optuna-dashboard WSGI app on ``storage_url`` (read-only if asked)."""
    import optuna_dashboard

    from lrsearch.storage import open_storage

    app = wrap_long_lines(
        optuna_dashboard.wsgi(
            open_storage(storage_url, create=False), artifact_store=artifact_store
        )
    )
    return read_only(app) if readonly else app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def serve(
    storage_url: str,
    *,
    artifact_store: Any = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    readonly: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Serves the dashboard until interrupted; warns on stderr when ``host`` is not loopback."""
    app = make_app(storage_url, artifact_store, readonly=readonly)
    if not is_loopback(host):
        and_delete = "" if readonly else ", and delete any of them (consider --read-only)"
        print(
            "\n" + EXPOSED_WARNING.format(host=host, port=port, and_delete=and_delete) + "\n",
            file=sys.stderr,
            flush=True,
        )
    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    shown = f"[{host}]" if ":" in host else host
    echo(
        f"optuna-dashboard on http://{shown}:{server.server_port}/"
        + (" (read-only)" if readonly else "")
        + " - Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

"""Security headers on every answer: a Content-Security-Policy that lets the page run only the app's own scripts, no
framing, no MIME sniffing, no referrer sent elsewhere, and no caching of anything but the app's static assets."""

from __future__ import annotations

from flask import Flask, Response, request


def content_security_policy(script_hashes: list[str]) -> str:
    """Scripts only from this server (plus Dash's own inline start-up script, by hash). Styles may be inline: Plotly
    and Leaflet set them on elements. Images may be data: URIs (patch previews) and blob: (Plotly's downloads)."""
    scripts = " ".join(["'self'", *script_hashes])  # Dash gives each hash quoted, as CSP writes it
    return ("default-src 'self'; "
            f"script-src {scripts}; "
            "style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; "
            "font-src 'self' data:; "
            "connect-src 'self'; "
            "worker-src 'self' blob:; "
            "object-src 'none'; "
            "base-uri 'self'; "
            "form-action 'self'; "
            "frame-ancestors 'none'")


def install_security_headers(server: Flask, script_hashes: list[str]) -> None:
    policy = content_security_policy(script_hashes)

    @server.after_request
    def add_security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if "Cache-Control" not in response.headers and not request.path.startswith(("/assets/", "/_dash-component-suites/")):
            response.headers["Cache-Control"] = "no-store"  # pages and callback answers carry patient data
        return response

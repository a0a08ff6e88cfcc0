"""The operator console (SPEC section 12): server-rendered pages under ``/console``, served by the daemon.

``session`` holds the signed session cookie and its CSRF token, ``views`` the routes, ``templates/`` the
pages (Jinja2, autoescaped) and ``static/`` every asset they use (htmx, vendored with its licence, and
the style sheet): the console works without a network.
"""

from sync.http.console.views import install

__all__ = ["install"]

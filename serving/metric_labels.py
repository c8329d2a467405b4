"""Request metrics labelled by known routes only (issue 15, point 3).

BentoML's request metrics (``bentoml_service_request_total``, ``..._request_duration_seconds``,
``..._request_in_progress``) carry an ``endpoint`` label taken from the raw request path, so
every distinct unknown path a scanner sends adds series to ``/metrics`` for good (3,000
random paths grew it from 113 KB to 11.5 MB). Its middleware is the outermost one and reads the
path before any service middleware runs, and BentoML has no setting for it; so the service
replaces that middleware class (``RunnerTrafficMetricsMiddleware``, looked up by BentoML's app
factory when it builds the app, after importing the service) by a subclass that shows it one
label, ``OTHER``, for any path that is not a route of the service, and restores the real path
for everything inside it (routing, auth, access log, the service's own log lines).
Written against BentoML 1.4.39 (a BentoML without that class fails at import, loudly).
"""

from __future__ import annotations

OTHER = "/{other}"  # the one label of every unknown path
ROUTES = frozenset({"/", "/docs.json", "/models", "/livez", "/readyz", "/healthz", "/metrics"})
PREFIXES = {"/static_content/": "/static_content/{file}"}  # the docs page's assets
_PATH_KEY = "lifecycle.path"


def route_label(path: str, api_routes: frozenset[str]) -> str:
    """``path`` itself when it is a route of the service (API routes, probes, docs,
    ``/models``), the prefix's label for the docs' assets, else :data:`OTHER`."""
    if path in api_routes or path in ROUTES:
        return path
    for prefix, label in PREFIXES.items():
        if path.startswith(prefix):
            return label
    return OTHER


def install(api_routes: frozenset[str]) -> None:
    """Make BentoML's request-metrics middleware label by :func:`route_label`. Idempotent;
    call it when the service module is imported (before BentoML builds the app)."""
    from bentoml._internal.server.http import instruments

    base = instruments.RunnerTrafficMetricsMiddleware
    if getattr(base, "labels_known_routes", False):
        return

    class KnownRouteMetrics(base):
        labels_known_routes = True

        def __init__(self, app, *args, **kwargs) -> None:
            super().__init__(_restore_path(app), *args, **kwargs)

        async def __call__(self, scope, receive, send) -> None:
            path = scope.get("path")
            if scope["type"] == "http" and path is not None:
                label = route_label(path, api_routes)
                if label != path:
                    scope = {**scope, "path": label, _PATH_KEY: path}
            await super().__call__(scope, receive, send)

    instruments.RunnerTrafficMetricsMiddleware = KnownRouteMetrics


def _restore_path(app):
    """The app inside the metrics middleware, given the request's real path back."""

    async def restored(scope, receive, send) -> None:
        if _PATH_KEY in scope:
            scope = {**scope, "path": scope[_PATH_KEY]}
            del scope[_PATH_KEY]
        await app(scope, receive, send)

    return restored

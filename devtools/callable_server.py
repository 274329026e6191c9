"""Every callable from one local server, at the URL the Firebase JS SDK's
``connectFunctionsEmulator`` calls: ``http://HOST:PORT/{project}/{region}/{name}``.

Production serves each function alone (Cloud Run functions, or ``functions-framework --target
NAME`` on ``/``); this router exists for the local stack and the end-to-end tests, so a browser
or node client talks to the same handlers through the same protocol wrapper
(:func:`agenttrader.callable.https_callable`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from agenttrader.callable import CallableError, HttpFunction, Status
from devtools.background_server import BackgroundServer

if TYPE_CHECKING:
    import flask


def callables_app(
    functions: Mapping[str, HttpFunction],
    *,
    project: str | None = None,
    region: str | None = None,
) -> flask.Flask:
    """A Flask app routing ``/{project}/{region}/{name}`` to ``functions[name]``.

    With ``project`` / ``region`` given, other values are ``NOT_FOUND``, as a deployed function
    would be; ``GET /`` lists the functions (a readiness probe).
    """
    import flask

    app = flask.Flask("agenttrader-callables")
    served = dict(functions)

    def not_found(message: str) -> flask.Response:
        error = CallableError(Status.NOT_FOUND, message)
        return flask.Response(
            json.dumps(error.body()), status=error.http_status, mimetype="application/json"
        )

    @app.route("/", methods=["GET"])
    def index() -> flask.Response:
        return flask.jsonify({"functions": sorted(served)})

    @app.route(
        "/<project_id>/<region_id>/<name>",
        methods=["GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"],
    )
    def call(project_id: str, region_id: str, name: str) -> flask.Response:
        function = served.get(name)
        if function is None:
            return not_found(f"no callable named {name[:64]!r}")
        if (project and project_id != project) or (region and region_id != region):
            return not_found(f"{name} is not deployed in {project_id[:64]}/{region_id[:64]}")
        return function(flask.request)

    return app


class CallablesServer(BackgroundServer):
    """:func:`callables_app` on a threaded loopback WSGI server; a context manager."""

    def __init__(
        self,
        functions: Mapping[str, HttpFunction],
        *,
        port: int = 0,
        project: str | None = None,
        region: str | None = None,
    ) -> None:
        from werkzeug.serving import make_server

        app = callables_app(functions, project=project, region=region)
        super().__init__(make_server("127.0.0.1", port, app, threaded=True), "callables")

    @property
    def host_port(self) -> str:
        """What ``connectFunctionsEmulator(functions, host, port)`` is given."""
        return f"127.0.0.1:{self.port}"

    def url(self, project: str, region: str, name: str) -> str:
        return f"http://{self.host_port}/{project}/{region}/{name}"

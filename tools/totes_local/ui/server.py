"""The console's HTTP server: pages, their JSON, and every asset, on 127.0.0.1 only.

The standard library's threading server is enough for one person's browser on the
same machine: each request gets a thread, and the pages poll small JSON answers. It
binds the loopback address only: the console shows the warehouse's figures and the
quarantine's source rows, which are for the operator's eyes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from totes.errors import TotesError
from totes_local.stacks import StackOutputs
from totes_local.ui import sales
from totes_local.ui.charts import column_chart
from totes_local.ui.readers import DeploymentReader

#: Only this address: the console is for the person at this machine.
LOOPBACK = "127.0.0.1"
_PAGES = {
    "executions": "Executions",
    "health": "Pipeline health",
    "sales": "Sales",
}
_ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
_MERMAID = Path("node_modules") / "mermaid" / "dist" / "mermaid.min.js"


def mermaid_script(project: Path | None) -> Path | None:
    """Mermaid's browser build, as ``npm ci`` installed it from package-lock.json.

    Examples
    --------
    >>> mermaid_script(Path("/nowhere")) is None
    True
    """
    if project is None:
        return None
    path = project / _MERMAID
    return path if path.is_file() else None


#: The executions page lists this many unless asked for every one.
EXECUTIONS_SHOWN = 100


def _limit(text: str | None) -> int | None:
    """``?limit=``: a number of executions, ``all`` for every one; 100 by default."""
    if text == "all":
        return None
    return int(text) if text else EXECUTIONS_SHOWN


def health_charts(health: dict[str, Any]) -> list[dict[str, str]]:
    """The health page's charts over the last executions, drawn as SVG."""
    executions = health["executions"]
    names = [execution["name"].removeprefix("local-")[:16] for execution in executions]
    stages: list[str] = []
    for execution in executions:
        stages += [stage for stage in execution["stages_s"] if stage not in stages]
    charts = []
    if executions:
        charts.append(
            {
                "title": "Seconds per stage",
                "shows": "Each execution's seconds in each stage (summed over its passes).",
                "svg": column_chart(
                    names,
                    {
                        stage: [execution["stages_s"].get(stage, 0.0) for execution in executions]
                        for stage in stages
                    },
                    label="seconds per stage",
                    stacked=True,
                ),
            }
        )
        charts.append(
            {
                "title": "Rows per execution",
                "shows": "Source rows ingested and rows loaded into the warehouse.",
                "svg": column_chart(
                    names,
                    {
                        "ingested": [execution["rows_ingested"] for execution in executions],
                        "loaded": [execution["rows_moved"] for execution in executions],
                    },
                    label="rows per execution",
                ),
            }
        )
        charts.append(
            {
                "title": "Rows rejected",
                "shows": "Rows a stage kept aside in each execution (see the quarantine below).",
                "svg": column_chart(
                    names,
                    {"rejected": [execution["rows_rejected"] for execution in executions]},
                    label="rows rejected",
                ),
            }
        )
    return charts


def page(kind: str, title: str, *, data: dict[str, str] | None = None) -> str:
    """A page's HTML: the navigation, an empty main filled by ``ui.js``, and its assets."""
    links = "".join(
        f'<a href="/{key}"{" aria-current=page" if key == kind else ""}>{escape(text)}</a>'
        for key, text in _PAGES.items()
    )
    attributes = "".join(
        f' data-{key}="{escape(value)}"' for key, value in {"page": kind, **(data or {})}.items()
    )
    scripts = '<script src="/assets/mermaid.min.js"></script>' if kind == "execution" else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · totes</title>
<link rel="stylesheet" href="/assets/ui.css">
{scripts}<script src="/assets/ui.js" defer></script>
</head><body>
<header><strong>totes</strong><nav>{links}</nav><span id="stack"></span></header>
<main{attributes}><h1>{escape(title)}</h1><p class="loading">Loading…</p></main>
</body></html>
"""


@dataclass
class Console:
    """What the server answers from: the deployment's reader and where mermaid is."""

    reader: DeploymentReader
    mermaid: Path | None

    @property
    def stack(self) -> StackOutputs:
        """The deployment shown."""
        return self.reader.stack


#: The Host names a request to the console may carry: this machine's own.
_LOCAL_NAMES = frozenset({LOOPBACK, "localhost"})


def _handler(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "totes-ui"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows the URL, not every request."""

        def do_GET(self) -> None:
            # A page of another site whose name was pointed at 127.0.0.1 (DNS rebinding)
            # sends its own name as the Host: only this machine's names are answered.
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in _LOCAL_NAMES:
                self.send_error(HTTPStatus.BAD_REQUEST, "not a name of this machine")
                return
            address = urlsplit(self.path)
            parameters = dict(parse_qsl(address.query))
            path = unquote(address.path).rstrip("/") or "/"
            try:
                self._route(path, parameters)
            except BrokenPipeError:
                pass  # the browser went away
            except (TotesError, ValueError) as exc:
                self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
            except Exception as exc:
                # The page shows why it cannot read the deployment (the service stopped, the
                # warehouse refused): the person at this machine is the one who can fix it.
                answer = {"error": f"{type(exc).__name__}: {exc}"}
                self._json(answer, HTTPStatus.INTERNAL_SERVER_ERROR)

        def _route(self, path: str, parameters: dict[str, str]) -> None:
            routes: dict[str, Callable[[], None]] = {
                "/": lambda: self._redirect("/executions"),
                "/executions": lambda: self._html(page("executions", "Executions")),
                "/health": lambda: self._html(page("health", "Pipeline health")),
                "/sales": lambda: self._html(page("sales", "Sales")),
                "/api/about": lambda: self._json(
                    {"stack": console.stack.name, "graph": console.mermaid is not None}
                ),
                "/api/executions": lambda: self._json(
                    console.reader.executions(_limit(parameters.get("limit")))
                ),
                "/api/health": self._health,
                "/api/sales": lambda: self._json(
                    sales.answer(console.stack, sales.SalesFilters.parse(parameters))
                ),
                "/assets/mermaid.min.js": self._mermaid,
                "/favicon.ico": lambda: self._send(HTTPStatus.NO_CONTENT, "image/x-icon", b""),
            }
            if path in routes:
                routes[path]()
            elif path.startswith("/executions/"):
                name = path.removeprefix("/executions/")
                self._html(page("execution", f"Execution {name}", data={"execution": name}))
            elif path.startswith("/api/executions/"):
                self._execution(path.removeprefix("/api/executions/"))
            elif path.startswith("/assets/"):
                self._asset(path.removeprefix("/assets/"))
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")

        def _execution(self, name: str) -> None:
            sfn = console.reader.client("stepfunctions")
            try:
                self._json(console.reader.execution_detail(name))
            except sfn.exceptions.ExecutionDoesNotExist:
                self._json({"error": f"no execution {name}"}, HTTPStatus.NOT_FOUND)

        def _health(self) -> None:
            health = console.reader.health()
            self._json({**health, "charts": health_charts(health)})

        def _mermaid(self) -> None:
            if console.mermaid is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"mermaid is not installed")
                return
            self._send(HTTPStatus.OK, "text/javascript", console.mermaid.read_bytes(), cache=True)

        def _asset(self, name: str) -> None:
            # Only the package's own files, by plain name: no path leads elsewhere.
            suffix = Path(name).suffix
            if "/" in name or suffix not in _ASSET_TYPES:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
                return
            asset = resources.files("totes_local.ui").joinpath("static", name)
            if not asset.is_file():
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
                return
            self._send(HTTPStatus.OK, _ASSET_TYPES[suffix], asset.read_bytes())

        def _redirect(self, where: str) -> None:
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", where)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _html(self, text: str) -> None:
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", text.encode())

        def _json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
            body = json.dumps(value, default=str).encode()
            self._send(status, "application/json", body)

        def _send(
            self, status: HTTPStatus, content_type: str, body: bytes, *, cache: bool = False
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            # The pages' figures change with every execution; only mermaid stays put.
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


class ConsoleServer:
    """The console served from a thread of its own, until :meth:`stop`.

    Parameters
    ----------
    stack
        The deployment to show.
    port
        The port on 127.0.0.1; 0 picks a free one.
    project
        The checkout whose ``node_modules`` holds mermaid (None: graphs are not drawn,
        their states are still listed).

    Examples
    --------
    >>> with ConsoleServer(local_stack(Path(".totes")), port=0) as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123/
    """

    def __init__(self, stack: StackOutputs, *, port: int = 0, project: Path | None = None) -> None:
        console = Console(DeploymentReader(stack), mermaid_script(project))
        self._server = ThreadingHTTPServer((LOOPBACK, port), _handler(console))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="totes-ui", daemon=True
        )

    @property
    def url(self) -> str:
        """Where the console answers."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> ConsoleServer:
        """Serve from now on."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

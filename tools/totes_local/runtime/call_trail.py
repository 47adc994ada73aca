"""A trail of what each Lambda function asks of AWS, as IAM would authorise it.

Every worker signs its requests with credentials of its own (the access key id is the
function's name, as each function's role gives it credentials of its own on AWS). When
``TOTES_LOCAL_CALL_TRAIL`` names a file, the service writes to it one JSON line per
distinct ``(function, action, resource)`` that a function's request needed: the IAM
action (``s3:GetObject``), the resource ARN the action is authorised against, and for
S3 the key or the listed prefix. A request that needs two authorisations (a copy reads
its source and writes its target) is two lines. It also counts every request of every
function by action (a request by the last action it needs: a copy is a put), which
``GET /totes-local/call-counts`` answers (:func:`call_counts`): what an execution asks of
AWS, and so what it is billed for. ``GET /totes-local/call-seconds`` answers the seconds
the service took to answer them, by the same function and action
(:func:`call_seconds`): the share of a handler's duration that is the local service's,
not the handler's own work.

The tests evaluate the trail against each function's role in the synthesised template
(``tests/workflow/test_least_privilege.py``): a call the role would refuse fails, and a
grant no call used must be removed or its reason written down. The mapping covers the
requests the functions make; an unknown S3 request is recorded as ``s3:<METHOD>?`` so
that it fails the evaluation by name instead of passing unnoticed.
"""

from __future__ import annotations

import html
import io
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: The service records when this names a file (the workflow tier sets it).
CALL_TRAIL_VARIABLE = "TOTES_LOCAL_CALL_TRAIL"
#: Where the service answers the counts of the functions' requests (unsigned GET).
CALL_COUNTS_PATH = "/totes-local/call-counts"
#: Where it answers the seconds it took to answer them.
CALL_SECONDS_PATH = "/totes-local/call-seconds"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
#: Signing names whose IAM prefix differs.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
#: A key of a multi-object delete request (XML text, escaped as XML escapes it).
_DELETED_KEY = re.compile(rb"<Key>(.*?)</Key>", re.DOTALL)


class CallTrail:
    """WSGI middleware: records the calls of functions (not of the CLI or the service).

    Parameters
    ----------
    app
        The WSGI application serving the request (moto's).
    path : pathlib.Path
        The JSON-lines file, appended to.
    account : str
        The account ARNs are built for.
    local_key : str
        The access key id of clients other than the functions (not recorded).
    """

    def __init__(self, app: Any, path: Path, *, account: str, local_key: str) -> None:
        self._app = app
        self._path = path
        self._account = account
        self._local_key = local_key
        self._seen: set[tuple[str, str, str]] = set()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._seconds: defaultdict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if not authorization and environ.get("PATH_INFO") == CALL_COUNTS_PATH:
            return self._answer(start_response, self._counts)
        if not authorization and environ.get("PATH_INFO") == CALL_SECONDS_PATH:
            return self._answer(start_response, self._seconds)
        match = _CREDENTIAL.search(authorization)
        if match is None or match.group(1) == self._local_key:
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        function, region, service = match.groups()
        body = _body(environ) if _needs_body(service, environ) else b""
        authorisations = list(needed_authorisations(environ, body, service, region, self._account))
        self._record(function, authorisations)
        started = time.perf_counter()
        # moto answers with a response whose body is already made: this is its work.
        answer = self._app(environ, start_response)
        if authorisations:
            with self._lock:
                self._seconds[(function, authorisations[-1][0])] += time.perf_counter() - started
        return answer  # type: ignore[no-any-return]

    def _answer(self, start_response: Any, figures: Mapping[tuple[str, str], float]) -> list[bytes]:
        with self._lock:
            answer: dict[str, dict[str, float]] = {}
            for (function, action), figure in sorted(figures.items()):
                answer.setdefault(function, {})[action] = figure
        body = json.dumps(answer).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    def _record(self, function: str, authorisations: list[tuple[str, str, str | None]]) -> None:
        lines = []
        with self._lock:
            if authorisations:  # one request, named by what it does last (a copy: its put)
                self._counts[(function, authorisations[-1][0])] += 1
            for action, resource, key in authorisations:
                if (function, action, resource) in self._seen:
                    continue
                self._seen.add((function, action, resource))
                entry = {"function": function, "action": action, "resource": resource}
                if key is not None:
                    entry["s3_key"] = key
                lines.append(json.dumps(entry))
            if lines:
                with self._path.open("a", encoding="utf-8") as trail:
                    trail.write("\n".join(lines) + "\n")


def call_counts(endpoint: str) -> dict[str, dict[str, int]]:
    """Requests each function has made so far, by IAM action (a service recording a trail).

    Examples
    --------
    >>> call_counts("http://127.0.0.1:4566")  # doctest: +SKIP
    {'totes-Ingest': {'dynamodb:GetItem': 11, 's3:PutObject': 22}}
    """
    return {
        function: {action: int(count) for action, count in actions.items()}
        for function, actions in _figures(endpoint, CALL_COUNTS_PATH).items()
    }


def call_seconds(endpoint: str) -> dict[str, dict[str, float]]:
    """Seconds the service took to answer each function's requests so far, by IAM action.

    Examples
    --------
    >>> call_seconds("http://127.0.0.1:4566")  # doctest: +SKIP
    {'totes-Ingest': {'dynamodb:GetItem': 0.021, 's3:PutObject': 0.094}}
    """
    return _figures(endpoint, CALL_SECONDS_PATH)


def _figures(endpoint: str, path: str) -> dict[str, dict[str, float]]:
    with urllib.request.urlopen(f"{endpoint}{path}", timeout=10) as response:  # noqa: S310  # nosec B310 (the local service)
        figures: dict[str, dict[str, float]] = json.loads(response.read())
    return figures


def read_trail(path: Path) -> list[dict[str, str]]:
    """The recorded calls, in the order first seen (an absent file: none).

    Examples
    --------
    >>> read_trail(Path("/nonexistent/trail.jsonl"))
    []
    """
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _needs_body(service: str, environ: dict[str, Any]) -> bool:
    if service != "s3":
        return True
    # A multi-object delete names its keys in the body (small XML); other bodies are data.
    return environ.get("REQUEST_METHOD") == "POST" and "delete" in _query(environ)


def _body(environ: dict[str, Any]) -> bytes:
    """The request body, put back for the application to read."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _query(environ: dict[str, Any]) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)


def needed_authorisations(
    environ: dict[str, Any], body: bytes, service: str, region: str, account: str
) -> Iterator[tuple[str, str, str | None]]:
    """``(action, resource ARN, S3 key or listed prefix)`` for each authorisation a request needs.

    Examples
    --------
    >>> environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/raw/sales_order/part-0.csv",
    ...            "QUERY_STRING": ""}
    >>> list(needed_authorisations(environ, b"", "s3", "eu-west-2", "123456789012"))
    [('s3:GetObject', 'arn:aws:s3:::raw/sales_order/part-0.csv', 'sales_order/part-0.csv')]
    """
    if service == "s3":
        yield from _s3(environ, body)
        return
    prefix = _IAM_PREFIX.get(service, service)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        operation = target.rsplit(".", 1)[-1]
        payload = json.loads(body or b"{}")
    else:  # the query protocol (SNS): form fields
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        operation = form.get("Action", ["?"])[0]
        payload = {name: values[0] for name, values in form.items()}
    arn = f"arn:aws:{{}}:{region}:{account}"
    for resource in _resources(prefix, operation, payload, arn):
        yield f"{prefix}:{operation}", resource, None


def _resources(prefix: str, operation: str, payload: dict[str, Any], arn: str) -> list[str]:
    if prefix == "dynamodb":
        # A batch names its tables as the keys of its request items; IAM checks each.
        tables = list(payload.get("RequestItems") or {}) or [payload.get("TableName", "?")]
        return [arn.format("dynamodb") + f":table/{table}" for table in tables]
    if prefix == "secretsmanager":
        secret = str(payload.get("SecretId", "?"))
        # The ARN of a secret ends in "-" and six characters AWS chose: any six will do.
        named = arn.format("secretsmanager") + f":secret:{secret}-AbCdEf"
        return [secret if secret.startswith("arn:") else named]
    if prefix == "glue":
        catalog = arn.format("glue") + ":catalog"
        database = payload.get("DatabaseName") or (
            payload.get("Name") if "Database" in operation else None
        )
        table = payload.get("TableName") or payload.get("TableInput", {}).get("Name")
        if table is None and "Table" in operation and "Database" not in operation:
            table = payload.get("Name")
        resources = [catalog]
        if database:
            resources.append(arn.format("glue") + f":database/{database}")
            if table:
                resources.append(arn.format("glue") + f":table/{database}/{table}")
        return resources
    if prefix == "sns":
        return [str(payload.get("TopicArn", "?"))]
    if prefix == "athena":
        return [arn.format("athena") + f":workgroup/{payload.get('WorkGroup', 'primary')}"]
    return ["*"]


def _s3(environ: dict[str, Any], body: bytes) -> Iterator[tuple[str, str, str | None]]:
    method = environ.get("REQUEST_METHOD", "GET")
    path = urllib.parse.unquote(environ.get("PATH_INFO", "/")).lstrip("/")
    bucket, _, key = path.partition("/")
    query = _query(environ)
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not bucket:
        yield "s3:ListAllMyBuckets", "*", None
    elif not key:
        yield from _s3_bucket(method, bucket_arn, query, body)
    else:
        yield from _s3_object(method, bucket_arn, key, query, environ)


def _s3_bucket(
    method: str, bucket_arn: str, query: dict[str, list[str]], body: bytes
) -> Iterator[tuple[str, str, str | None]]:
    if "delete" in query and method == "POST":
        for deleted in _deleted_keys(body):
            yield "s3:DeleteObject", f"{bucket_arn}/{deleted}", deleted
    elif "versions" in query:
        yield "s3:ListBucketVersions", bucket_arn, query.get("prefix", [""])[0]
    elif "location" in query:
        yield "s3:GetBucketLocation", bucket_arn, None
    elif method in ("GET", "HEAD"):
        yield "s3:ListBucket", bucket_arn, query.get("prefix", [""])[0]
    else:
        yield f"s3:{method}?", bucket_arn, None


def _s3_object(
    method: str, bucket_arn: str, key: str, query: dict[str, list[str]], environ: dict[str, Any]
) -> Iterator[tuple[str, str, str | None]]:
    object_arn = f"{bucket_arn}/{key}"
    versioned = "versionId" in query
    if method in ("GET", "HEAD"):
        yield ("s3:GetObjectVersion" if versioned else "s3:GetObject"), object_arn, key
    elif method == "PUT":
        source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if source:
            source_path = urllib.parse.unquote(source.split("?", 1)[0]).lstrip("/")
            yield "s3:GetObject", f"arn:aws:s3:::{source_path}", source_path.partition("/")[2]
        yield "s3:PutObject", object_arn, key
    elif method == "POST":  # multipart upload: start and complete
        yield "s3:PutObject", object_arn, key
    elif method == "DELETE" and "uploadId" in query:
        yield "s3:AbortMultipartUpload", object_arn, key
    elif method == "DELETE":
        yield ("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject"), object_arn, key
    else:
        yield f"s3:{method}?", object_arn, key


def _deleted_keys(body: bytes) -> list[str]:
    return [html.unescape(key.decode("utf-8")) for key in _DELETED_KEY.findall(body)]

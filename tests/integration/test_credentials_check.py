"""The deployment's check of the credentials secrets, as CloudFormation runs it: a custom
resource request in, an answer PUT to the pre-signed HTTPS URL it waits on."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lambdas.credentials_check.handler import handler
from tests.lambda_context import FakeContext
from tests.tls import make_certificates
from totes.errors import InvalidEventError

SOURCE, WAREHOUSE = "totesys_db_credentials", "postgres_db_credentials"
COMPLETE = {"host": "db", "port": 5432, "user": "etl", "password": "s3cr3t-pw", "database": "d"}


class _CloudFormation:
    """An HTTPS endpoint on 127.0.0.1 that keeps every answer PUT to it."""

    def __init__(self, certificates_folder: Path) -> None:
        certificates = make_certificates(certificates_folder)
        self.authority = certificates.authority
        self.answers: list[dict[str, Any]] = []
        answers = self.answers

        class Endpoint(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                answers.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Quiet: the test reads the answers, not an access log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_certificate, certificates.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.server_address[1]}/stack/request?signature=x"


@pytest.fixture
def cloudformation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_CloudFormation]:
    """The endpoint, trusted by the function's HTTPS client as S3's would be on AWS."""
    endpoint = _CloudFormation(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint.authority))
    endpoint.thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()
    endpoint.thread.join(timeout=5)


def _request(url: str, request_type: str = "Create") -> dict[str, Any]:
    return {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:eu-west-2:123456789012:stack/TotesDataPlatform/1",
        "RequestId": "request-7",
        "LogicalResourceId": "CredentialsCheckSecretsReadable63A1E55A",
        "ResourceType": "Custom::CredentialsReadable",
        "ResourceProperties": {"ServiceToken": "arn:function", "SecretNames": [SOURCE, WAREHOUSE]},
    }


def _check(cloudformation: _CloudFormation, request_type: str = "Create") -> dict[str, Any]:
    handler(_request(cloudformation.url, request_type), FakeContext("totes-credentials-check"))
    (answer,) = cloudformation.answers
    # Every answer names the request it answers, as CloudFormation requires
    assert (answer["RequestId"], answer["LogicalResourceId"]) == (
        "request-7",
        "CredentialsCheckSecretsReadable63A1E55A",
    )
    return answer


def test_a_first_deployment_without_the_secrets_is_refused_saying_what_to_create(
    secretsmanager: Any, cloudformation: _CloudFormation
) -> None:
    # Given an account with neither secret
    # When CloudFormation creates the check
    answer = _check(cloudformation)

    # Then it fails, naming both secrets, what they must hold, and where to read more
    assert answer["Status"] == "FAILED"
    assert f"secret {SOURCE!r} does not exist or may not be read" in answer["Reason"]
    assert f"secret {WAREHOUSE!r} does not exist or may not be read" in answer["Reason"]
    assert "host, port, user, password and database" in answer["Reason"]
    assert "First deployment" in answer["Reason"]


def test_an_incomplete_secret_is_named_by_its_missing_fields_never_its_values(
    secretsmanager: Any, cloudformation: _CloudFormation
) -> None:
    # Given a complete source secret and a warehouse secret without its password
    secretsmanager.create_secret(Name=SOURCE, SecretString=json.dumps(COMPLETE))
    without_password = {key: value for key, value in COMPLETE.items() if key != "password"}
    secretsmanager.create_secret(Name=WAREHOUSE, SecretString=json.dumps(without_password))

    # When CloudFormation creates the check
    answer = _check(cloudformation)

    # Then it fails for the warehouse secret alone, and no secret value is in the reason
    assert answer["Status"] == "FAILED"
    assert f"secret {WAREHOUSE!r} lacks password" in answer["Reason"]
    assert SOURCE not in answer["Reason"]
    assert COMPLETE["password"] not in answer["Reason"]


def test_both_secrets_complete_let_the_deployment_go_on(
    secretsmanager: Any, cloudformation: _CloudFormation
) -> None:
    # Given both secrets, complete
    for name in (SOURCE, WAREHOUSE):
        secretsmanager.create_secret(Name=name, SecretString=json.dumps(COMPLETE))

    # When CloudFormation creates the check
    answer = _check(cloudformation)

    # Then it succeeds, and the schedule that depends on it is created next
    assert answer["Status"] == "SUCCESS"
    assert answer["PhysicalResourceId"] == "CredentialsCheckSecretsReadable63A1E55A"


def test_deleting_the_stack_is_never_held_back_by_the_check(
    secretsmanager: Any, cloudformation: _CloudFormation
) -> None:
    # Given an account whose secrets are gone
    # When CloudFormation deletes the check with the stack
    answer = _check(cloudformation, "Delete")

    # Then it succeeds without looking at them
    assert answer["Status"] == "SUCCESS"


def test_an_answer_url_that_is_not_https_is_refused_not_followed(
    secretsmanager: Any,
) -> None:
    # Given a request whose answer URL is plain HTTP (CloudFormation's are pre-signed HTTPS)
    event = _request("http://127.0.0.1:9/answer")

    # When the function handles it, then it refuses by name and sends nothing
    with pytest.raises(InvalidEventError, match="ResponseURL is not an https URL"):
        handler(event, FakeContext("totes-credentials-check"))


def test_a_check_that_fails_in_an_unforeseen_way_still_answers_cloudformation(
    secretsmanager: Any, cloudformation: _CloudFormation
) -> None:
    # Given a secret whose authority is not text a certificate file can hold
    secretsmanager.create_secret(Name=SOURCE, SecretString=json.dumps(COMPLETE))
    broken = {**COMPLETE, "sslrootcert_pem": "not a certificate: \u00e9"}
    secretsmanager.create_secret(Name=WAREHOUSE, SecretString=json.dumps(broken))

    # When CloudFormation creates the check, then it is answered, naming the secret's problem
    answer = _check(cloudformation)
    assert answer["Status"] == "FAILED"
    assert f"secret {WAREHOUSE!r}'s sslrootcert_pem is not a PEM certificate" in answer["Reason"]

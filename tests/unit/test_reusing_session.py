"""A boto3 session that makes each client once: what awswrangler's calls then cost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from botocore.config import Config

from totes.lake.reusing_session import ReusingSession


def test_clients_asked_for_with_equal_arguments_are_made_once() -> None:
    # Given a session, and two Config objects with the same options (awswrangler makes a
    # new one for every call)
    session = ReusingSession(region_name="eu-west-2")
    first = session.client("glue", config=Config(retries={"max_attempts": 5}))
    # When a client is asked for again with equal arguments
    again = session.client("glue", config=Config(retries={"max_attempts": 5}))
    # Then it is the same client
    assert again is first


def test_clients_of_other_services_options_or_endpoints_are_their_own() -> None:
    session = ReusingSession(region_name="eu-west-2")
    glue = session.client("glue", config=Config(retries={"max_attempts": 5}))
    assert session.client("s3", config=Config(retries={"max_attempts": 5})) is not glue
    assert session.client("glue", config=Config(connect_timeout=3)) is not glue
    assert session.client("glue", endpoint_url="http://127.0.0.1:9") is not glue
    assert session.client("glue", region_name="us-east-1").meta.region_name == "us-east-1"


def test_every_client_retries_as_the_handlers_do_whatever_config_it_is_given() -> None:
    # Given a session, asked for a client with awswrangler's own retry settings
    session = ReusingSession(region_name="eu-west-2")
    glue = session.client("glue", config=Config(retries={"max_attempts": 2}, connect_timeout=3))

    # Then it retries in botocore's standard mode, five attempts a call, and keeps the rest
    assert glue.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert glue.meta.config.connect_timeout == 3


def test_a_shared_clients_errors_are_caught_by_every_thread_that_uses_it() -> None:
    # Given a client handed out by a fresh session, about to be used by many threads at once
    # (the catalog step catalogues tables in parallel through one session)
    session = ReusingSession(region_name="eu-west-2")
    glue = session.client("glue")
    start = threading.Barrier(16)

    def error_class_seen() -> type:
        start.wait()
        return glue.exceptions.EntityNotFoundException  # type: ignore[no-any-return]

    # When every thread looks up the class of the error a missing table raises
    with ThreadPoolExecutor(max_workers=16) as pool:
        seen = {id(cls) for cls in pool.map(lambda _: error_class_seen(), range(16))}

    # Then all see one class: an error raised in one thread is caught by `except` in any
    assert len(seen) == 1

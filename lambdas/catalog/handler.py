"""Catalog Lambda: the lake's Glue tables brought up to date after the loads (CatalogLake).

Its layers are the core package, Powertools and the AWS-managed AWS SDK for pandas
(awswrangler, pandas, pyarrow): not the pipeline's dependencies layer, whose pyarrow
would clash. Hence no psycopg. Its clients come from one boto3 session per container
(:class:`~totes.lake.reusing_session.ReusingSession`), which awswrangler is given too and
which makes each client once.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.lake.catalog import CatalogRequest, CatalogSettings, catalog_lake
from totes.lake.reusing_session import ReusingSession
from totes.observability import logger


@cache
def _session() -> ReusingSession:
    """One session per container, whose clients warm invocations and awswrangler reuse."""
    return ReusingSession()


@cache
def _client(service: str) -> Any:
    return _session().client(service)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Catalog the lake for run ``event["run_id"]``."""
    request = CatalogRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    result = catalog_lake(
        request,
        CatalogSettings.from_environment(),
        s3=_client("s3"),
        glue=_client("glue"),
        session=_session(),
    )
    for table in result.tables:
        logger.info("table catalogued", extra={"catalogued": table.model_dump()})
    logger.info("lake catalogued", extra=result.to_payload())
    return result.to_payload()

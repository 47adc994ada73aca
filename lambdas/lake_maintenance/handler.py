"""Lake maintenance Lambda: the lake's Iceberg tables compacted and cleaned (MaintainLake).

Its layers are the pipeline's (core package, dependencies with pyiceberg and pyarrow,
Powertools), as load's: the two write the same tables.
"""

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from totes.aws import client
from totes.lake.iceberg import Lake
from totes.lake.maintenance import MaintenanceRequest, MaintenanceSettings, maintain_lake
from totes.observability import logger


@cache
def _lake() -> Lake:
    """One lake per container: warm invocations reuse its catalog and file system."""
    return Lake(MaintenanceSettings.from_environment().lake)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Maintain the lake's tables that are due, for run ``event["run_id"]``."""
    request = MaintenanceRequest.from_event(event)
    logger.set_correlation_id(request.run_id)
    result = maintain_lake(
        request, MaintenanceSettings.from_environment(), lake=_lake(), glue=client("glue")
    )
    for table in result.maintained:
        logger.info("table maintained", extra={"maintained": table.model_dump()})
    logger.info("lake maintained", extra=result.payload())
    return result.payload()

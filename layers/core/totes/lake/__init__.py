"""The lakehouse: the warehouse's tables as Parquet in the processed bucket, with a Glue catalog.

- :mod:`totes.lake.layout`: where each table's files are and what they hold (no AWS
  SDK beyond botocore, no awswrangler): used by load, which writes the lake, and by the
  catalog step and ``totes lake``, which read it.
- :mod:`totes.lake.catalog`: the catalog step (awswrangler): Glue tables, partitions and
  compacted dimension snapshots.
"""

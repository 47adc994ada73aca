"""The lakehouse: the warehouse's tables as Apache Iceberg tables in the Glue Data Catalog.

- :mod:`totes.lake.layout`: what each table holds (columns and types, its key, its
  partition column) and where it lives.
- :mod:`totes.lake.iceberg`: the tables themselves, through pyiceberg: opened, made
  afresh, committed to (load writes them: :mod:`totes.load.lake_export`).
- :mod:`totes.lake.maintenance`: the maintenance step: compaction, snapshot expiry,
  orphan files.
"""

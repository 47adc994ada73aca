"""The ingest stage: incremental, loss-free extraction of totesys tables into the raw zone."""

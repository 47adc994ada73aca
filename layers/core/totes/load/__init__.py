"""The load stage: star-zone (gold) Parquet files into the warehouse, exactly once per file."""

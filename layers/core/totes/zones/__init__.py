"""Where everything lives in the buckets: one module per zone, owning its keys.

Each module builds the keys of its zone and parses them back, so that a change to a
layout is made in one place (and its round-trip property test says whether the two
still agree):

========== ================= ===================================================
zone       bucket            keys
========== ================= ===================================================
raw        ingested          ``<table>/<yyyy>/<mm>/<dd>/<batch>-<part>.csv.gz`` and
                             ``_manifests/<table>/<yyyy>/<mm>/<dd>/<batch>.json``
mirror     processed         ``mirror/<warehouse table>/<source table>/<digest>.parquet``
gold       processed         ``<warehouse table>/seq=<n>/run=<run>/<n>-<digest>.parquet``
rejects    processed         ``rejects/<warehouse table>/run=<run>/<name>[.load].parquet``
state      processed         ``_state/transform/<warehouse table>.json`` and
                             ``_staging/transform/<warehouse table>/<name>.parquet``
lake       processed         ``lake/<warehouse table>/`` (:mod:`totes.lake.layout`)
========== ================= ===================================================
"""

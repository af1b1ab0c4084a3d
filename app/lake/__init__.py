"""The lake (SPEC 11): every loaded file's rows also appended, exactly once, to Apache Iceberg tables on S3.

`repository` (the outbox in PostgreSQL) is imported by the loaders; `catalog` and `exporter` need pyiceberg
and pyarrow (requirements-lake.txt) and are imported only when LAKE_WAREHOUSE is set.
"""

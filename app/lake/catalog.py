"""The Iceberg catalog (pyiceberg) and the lake's tables: imported only when LAKE_WAREHOUSE is set.

`glue` is the AWS Glue Data Catalog, what Athena, EMR and Glue jobs read; `sql` keeps the catalog in the
service's own PostgreSQL (pyiceberg's `iceberg_tables` and `iceberg_namespace_properties` tables), for
`make run` and the tests. Either way the data and metadata files go to LAKE_WAREHOUSE on S3.
"""

from pyiceberg.catalog import Catalog
from pyiceberg.catalog.glue import GlueCatalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from app.core.config import Settings
from app.lake.repository import PROCESSED_DATA

CATALOG_NAME = "lake"
# Table properties: pyiceberg retries a conflicting commit by itself without repeating our "is this file
# already in the table?" check, which duplicated rows in the feasibility test; the exporter retries
# instead, checking first.
# Each commit writes a new metadata file: keep the last 100, delete older ones as commits go.
TABLE_PROPERTIES = {
    "commit.retry.num-retries": "0",
    "format-version": "2",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}

PROCESSED_DATA_SCHEMA = Schema(
    NestedField(1, "file_id", LongType(), required=True, doc="file_processing_log.id of the file"),
    NestedField(2, "bucket", StringType(), required=True),
    NestedField(3, "key", StringType(), required=True),
    NestedField(4, "record_index", LongType(), required=True, doc="the record's position in its file"),
    NestedField(5, "row_hash", StringType(), required=True, doc="sha256 of the canonical JSON"),
    NestedField(6, "record", StringType(), required=True, doc="the record as JSON"),
    NestedField(7, "loaded_at", TimestamptzType(), required=True, doc="when PostgreSQL committed the file"),
)
PROCESSED_DATA_PARTITIONS = PartitionSpec(
    PartitionField(source_id=7, field_id=1000, transform=DayTransform(), name="loaded_day")
)


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL for SQLAlchemy's psycopg2 driver (the SQL catalog)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL: expected postgresql://...")
    return f"postgresql+psycopg2://{rest}"


def open_catalog(settings: Settings) -> Catalog:
    """The catalog LAKE_CATALOG names, writing to LAKE_WAREHOUSE with the service's AWS settings (an
    emulator's endpoint and keys when set; else the default credential chain: task role, IRSA)."""
    if settings.lake_warehouse is None:
        raise ValueError("LAKE_WAREHOUSE is not set: the lake is off")
    props = {"warehouse": settings.lake_warehouse, "s3.region": settings.aws_region}
    if settings.aws_endpoint_url is not None:
        props["s3.endpoint"] = str(settings.aws_endpoint_url).rstrip("/")
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        props["s3.access-key-id"] = settings.aws_access_key_id
        props["s3.secret-access-key"] = settings.aws_secret_access_key.get_secret_value()
    if settings.lake_catalog == "sql":
        return SqlCatalog(CATALOG_NAME, uri=sqlalchemy_url(str(settings.database_url)), **props)
    glue = {"glue.region": settings.aws_region}
    if settings.aws_endpoint_url is not None:
        glue["glue.endpoint"] = props["s3.endpoint"]
    if "s3.access-key-id" in props:
        glue["glue.access-key-id"] = props["s3.access-key-id"]
        glue["glue.secret-access-key"] = props["s3.secret-access-key"]
    return GlueCatalog(CATALOG_NAME, **props, **glue)


def lake_table(catalog: Catalog, namespace: str, name: str) -> Table:
    """The table, created on first use (by whichever replica gets there first). Loaded first: creating
    writes a metadata file before the catalog answers that the table exists, which would leave one behind
    at every start; and the namespace (a Glue database Terraform made) is only created when missing."""
    if name != PROCESSED_DATA:
        raise ValueError(f"no lake table {name!r}")
    try:
        return catalog.load_table((namespace, name))
    except NoSuchTableError:
        pass
    if not catalog.namespace_exists(namespace):
        catalog.create_namespace_if_not_exists(namespace)
    return catalog.create_table_if_not_exists(
        (namespace, name),
        schema=PROCESSED_DATA_SCHEMA,
        partition_spec=PROCESSED_DATA_PARTITIONS,
        properties=TABLE_PROPERTIES,
    )

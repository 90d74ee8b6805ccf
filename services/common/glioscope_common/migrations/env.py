"""Alembic environment for the system-of-record tables (studies, series, jobs)."""

from alembic import context

from glioscope_common.db import make_engine
from glioscope_common.records.models import RecordsBase

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = make_engine(url)

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=RecordsBase.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table="alembic_version_records",
    )
    with context.begin_transaction():
        context.run_migrations()

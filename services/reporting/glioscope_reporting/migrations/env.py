"""Alembic environment of the reporting tables (own version table in the shared database)."""

from alembic import context

from glioscope_common.db import make_engine
from glioscope_reporting.reports.models import ReportingBase

VERSION_TABLE = "alembic_version_reporting"

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:  # CLI use: take the URL from the service settings
    from glioscope_reporting.settings import Settings

    url = Settings().database_url


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # The database is shared: only ever look at our own tables when autogenerating.
    return type_ != "table" or name.startswith("reporting_")


engine = make_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=ReportingBase.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        version_table=VERSION_TABLE,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

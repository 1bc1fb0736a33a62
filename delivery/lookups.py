"""`field__any=values`: one array parameter on PostgreSQL instead of a placeholder per value.

The sending path filters on a thousand ids at a time. With `__in`, each query carries a thousand
placeholders, which psycopg splits and binds in Python on every call (a tenth of an email's cost
in bench/dispatch_bench.py). Elsewhere `__any` is exactly `__in`.
"""

from collections.abc import Sequence

from django.db import connection
from django.db.models import Field
from django.db.models.lookups import In


@Field.register_lookup
class AnyOf(In):
    lookup_name = "any"

    def as_postgresql(self, compiler, connection) -> tuple[str, list]:
        if not isinstance(self.rhs, list | tuple | set | frozenset):
            return super().as_sql(compiler, connection)  # a subquery stays IN (SELECT …)
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(v, connection, prepared=False) for v in self.rhs]
        return f"{lhs} = ANY(CAST(%s AS {field.cast_db_type(connection)}[]))", [
            *lhs_params,
            values,
        ]


def ids_condition(column: str, ids: Sequence[int]) -> tuple[str, list]:
    """SQL and parameters for `column` being one of `ids`, for hand-written statements."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(CAST(%s AS bigint[]))", [list(ids)]
    return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)

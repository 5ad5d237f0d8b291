"""Batched raw INSERT / UPDATE of one model's rows (`cursor.executemany`), for pipelines.sync.

The Upserter writes every created and updated row through a RowWriter; `people`
uses one for the member-parent links.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from django.db import connection, models


class RowWriter:
    """Batched INSERT / UPDATE of one model's rows with `cursor.executemany`.

    `bulk_create` / `bulk_update` prepare every value through the field API
    and `bulk_update` writes a CASE per column; on 50,000 members that alone
    costs several times the raw insert. Here each column gets its adapter once
    (dates, datetimes and decimals through `connection.ops`, so it is right on
    SQLite and PostgreSQL alike) and a batch is one `executemany`.
    """

    _PLAIN = (models.CharField, models.TextField, models.BooleanField, models.IntegerField, models.ForeignKey,
              models.AutoField, models.BigAutoField)

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.fields = {f.attname: f for f in model._meta.concrete_fields}
        self.fields.update({f.name: f for f in model._meta.concrete_fields})
        self.table = model._meta.db_table

    def _adapter(self, field: models.Field) -> Callable[[Any], Any] | None:
        ops = connection.ops
        if isinstance(field, models.DateTimeField):
            # A batch's timestamps are one value (now): adapt it once.
            return _remember_last(ops.adapt_datetimefield_value)
        if isinstance(field, models.DateField):
            return ops.adapt_datefield_value
        if isinstance(field, models.DecimalField):
            digits, places = field.max_digits, field.decimal_places
            return lambda value: ops.adapt_decimalfield_value(value, digits, places)
        if isinstance(field, self._PLAIN):
            return None
        return lambda value: field.get_db_prep_save(value, connection)

    def _prepare(self, names: Sequence[str]) -> tuple[list[str], Callable[[list[dict]], list[list]]]:
        """The columns for `names` and a function turning row dicts into parameter lists."""
        fields = [self.fields[name] for name in names]
        adapters = [(i, adapter) for i, f in enumerate(fields) if (adapter := self._adapter(f)) is not None]
        getter = itemgetter(*names) if len(names) > 1 else (lambda row, name=names[0]: (row[name],))

        def adapt(rows: list[dict]) -> list[list]:
            # Runs for every row written: only the columns that need it are adapted.
            out = []
            for row in rows:
                values = list(getter(row))
                for i, adapter in adapters:
                    value = values[i]
                    if value is not None:
                        values[i] = adapter(value)
                out.append(values)
            return out

        return [f.column for f in fields], adapt

    def insert(self, rows: list[dict]) -> None:
        """INSERT rows (dicts of field name -> value); missing fields get their defaults."""
        if not rows:
            return
        names = list(rows[0])
        columns, adapt = self._prepare(names)
        params = adapt(rows)
        # Fields the rows do not set get their default, prepared once per batch.
        defaults = [(field.column, field.get_db_prep_save(field.get_default(), connection))
                    for field in self.model._meta.concrete_fields
                    if not field.primary_key and field.name not in rows[0] and field.attname not in rows[0]]
        if defaults:
            columns += [column for column, _value in defaults]
            extra = [value for _column, value in defaults]
            for values in params:
                values.extend(extra)
        qn = connection.ops.quote_name
        # Identifiers come from the model's _meta (quoted); values are parameters.
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {qn(self.table)} ({', '.join(qn(c) for c in columns)}) VALUES ({placeholders})"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)

    def update(self, pks: list[int], rows: list[dict], names: Sequence[str]) -> None:
        """UPDATE `names` of the rows with the given primary keys."""
        if not rows:
            return
        columns, adapt = self._prepare(list(names))
        qn = connection.ops.quote_name
        pk_column = self.model._meta.pk.column
        assignments = ", ".join(f"{qn(c)} = %s" for c in columns)
        sql = f"UPDATE {qn(self.table)} SET {assignments} WHERE {qn(pk_column)} = %s"  # noqa: S608
        params = adapt(rows)
        for values, pk in zip(params, pks, strict=True):
            values.append(pk)
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _remember_last(adapter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    last: list = [object(), None]

    def adapt(value: Any) -> Any:
        if value is not last[0]:
            last[0], last[1] = value, adapter(value)
        return last[1]

    return adapt

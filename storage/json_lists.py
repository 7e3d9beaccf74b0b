"""SQL over JSON list columns, written once per dialect: "does this list want that value?".

A subscriber's topic choice is a JSON list (``subscriber.topics``; an empty list, JSON ``null`` or SQL NULL mean "every
topic"). The broadcast's eligibility filters by topic inside its queries (listmonk's way: the rule is the WHERE
clause), so the test must be SQL that both SQLite and PostgreSQL run:

* SQLite: ``json_array_length`` (0 for a non-array such as ``null``) and the table-valued ``json_each``
  (https://www.sqlite.org/json1.html);
* PostgreSQL: ``json_typeof``/``json_array_length`` and ``jsonb`` containment ``@>``
  (https://www.postgresql.org/docs/current/functions-json.html); the ``CASE`` guards ``json_array_length``, which
  raises on a non-array, because SQL does not promise to short-circuit ``OR``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class ListWants(FunctionElement[bool]):
    """``json_list_wants(column, value)`` as a SQL construct (a ``FunctionElement``, so caching and correlation see
    both arguments); compiled per dialect below."""

    type = Boolean()
    inherit_cache = True
    name = "json_list_wants"


def json_list_wants(column: ColumnElement[Any], value: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL boolean: the JSON list in ``column`` is NULL, not an array or empty (= wants everything), or contains
    ``value``. ``value`` is a SQL expression (a bound parameter or a correlated scalar subquery) of text type."""
    return ListWants(column, value)


def _operands(element: ListWants, compiler: Any, **kw: Any) -> tuple[str, str]:
    column, value = list(element.clauses)
    return compiler.process(column, **kw), compiler.process(value, **kw)


@compiles(ListWants, "sqlite")
def _sqlite(element: ListWants, compiler: Any, **kw: Any) -> str:
    column, value = _operands(element, compiler, **kw)
    return (f"(coalesce(json_array_length({column}), 0) = 0 OR EXISTS "
            f"(SELECT 1 FROM json_each({column}) AS wanted WHERE wanted.value = {value}))")


@compiles(ListWants, "postgresql")
def _postgresql(element: ListWants, compiler: Any, **kw: Any) -> str:
    column, value = _operands(element, compiler, **kw)
    return (f"(CASE WHEN json_typeof(CAST({column} AS JSON)) = 'array' "
            f"THEN json_array_length(CAST({column} AS JSON)) = 0 "
            f"OR CAST({column} AS JSONB) @> jsonb_build_array(CAST({value} AS TEXT)) ELSE TRUE END)")


@compiles(ListWants)
def _other(element: ListWants, compiler: Any, **kw: Any) -> str:
    """Any other database: refused when the statement is compiled (otayori supports SQLite and PostgreSQL only).

    Raises ``sqlalchemy.exc.CompileError`` naming the dialect."""
    raise CompileError(f"json_list_wants has no SQL for the {compiler.dialect.name} dialect (SQLite and PostgreSQL)")

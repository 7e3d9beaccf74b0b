"""storage.json_lists: the topic filter compiles for SQLite and PostgreSQL and refuses any other database."""

from __future__ import annotations

import pytest
from sqlalchemy import column
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import CompileError

from storage.json_lists import ListWants


@pytest.mark.parametrize("dialect, needle", [(sqlite.dialect(), "json_each"), (postgresql.dialect(), "@>")])
def test_supported_dialects_compile(dialect, needle):
    assert needle in str(ListWants(column("topics"), "it").compile(dialect=dialect))


def test_other_dialects_are_refused_naming_the_dialect():
    with pytest.raises(CompileError, match="mysql"):
        ListWants(column("topics"), "it").compile(dialect=mysql.dialect())

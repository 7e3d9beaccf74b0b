"""Alembic migrations, shipped inside the package (run them with ``otayori db upgrade``)."""

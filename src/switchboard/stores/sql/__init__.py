"""Durable state in SQL: SQLite (embedded) or PostgreSQL (cluster), through SQLAlchemy's async
engine, with the schema owned by the Alembic migrations in ``migrations/``."""

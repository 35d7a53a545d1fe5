"""The PostgreSQL backend: several collector replicas sharing one database (docs/postgresql.md)."""

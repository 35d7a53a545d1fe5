"""The SQLite backend: connection setup, schema migrations, the span writer, rollups, settling, retention, reads."""

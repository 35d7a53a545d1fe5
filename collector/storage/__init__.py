"""The only code that speaks SQL: connection setup, schema migrations, the span writer."""

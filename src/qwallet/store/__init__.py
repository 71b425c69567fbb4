"""Storage: the port the service uses and its adapters (SQLite, PostgreSQL, in memory)."""

"""The SQLite/SQLCipher engine: connections, pragmas, the writer and the reader pool."""

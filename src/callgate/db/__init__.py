"""The database: its tables, one executor of Core statements (two backends), the statements."""

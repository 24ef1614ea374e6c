"""The database: engine, models, migrations and the repositories the service and CLI use."""

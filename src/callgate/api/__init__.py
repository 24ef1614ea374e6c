"""HTTP resources: thin, they only translate between HTTP and the services."""

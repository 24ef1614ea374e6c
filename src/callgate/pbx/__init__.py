"""Everything that talks to a PBX: command builders, parsers, transports, the SSH pool."""

"""Placing calls: the service that turns a request into a verified originate."""

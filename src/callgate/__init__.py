"""callgate: start and follow phone calls on remote Asterisk PBXs over SSH."""

__version__ = "1.0.0"

"""`make bench`: callgate against the seed's way, measured in the same run on this machine."""

"""`python -m callgate`: the same CLI as the `callgate` command."""

from callgate.cli import main

main()

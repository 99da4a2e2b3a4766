"""`python -m graphcraft.cli ...` runs the `graphcraft` command."""

from graphcraft.cli import main

main()

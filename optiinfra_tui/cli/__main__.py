"""`python -m optiinfra_tui.cli`, as the tests and older scripts call it."""

from optiinfra_tui.cli import main

main()

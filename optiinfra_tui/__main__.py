"""`python -m optiinfra_tui`: the same command as `optiinfra-tui`."""

from optiinfra_tui.cli import main

if __name__ == "__main__":
    main()

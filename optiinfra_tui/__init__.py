"""OptiInfra TUI: cloud cost collection through a Huey worker pool, watched from the terminal."""

__version__ = "0.1.0"

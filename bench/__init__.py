"""bench: the command line, planning, scheduling and records of the LSPC benchmark harness."""

__version__ = "0.1.0"

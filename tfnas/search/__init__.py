"""Search drivers: HourNAS's two-stage search (`python -m tfnas.search`)."""

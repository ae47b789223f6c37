"""The command-line programs. Each is run as `python -m helpers.NAME` (a two-line module in helpers/
that calls this package's main); everything else in helpers/ is the library the notebook imports."""

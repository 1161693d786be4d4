"""localedit's agent: the language layer (EditPlan, offline parser, candidate selection) and the
conversation graph that drives the vision worker.

Importing this package is cheap: nothing here imports torch or any model code.
"""

"""The wiring on top of the library: the pipeline, one camera's recorder, `run`'s fleet of workers,
hooks, status files, logging, unit files, and the scan, probe and demo tasks the CLI calls.
"""

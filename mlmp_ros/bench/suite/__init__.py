"""Suites: the suite file, the results store and its records, the session, the trial loop and the executors."""

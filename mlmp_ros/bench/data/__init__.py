"""Data: the registered data sets and their readers, corruptions, and bench bags (write and read)."""

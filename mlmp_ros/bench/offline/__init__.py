"""Offline replay of one bag: run options, decoded frames, one trial, and the cache a process keeps."""

"""The scripts beside the stored data make that data with the real tools; they are not tests (nor doctests)."""

collect_ignore_glob = ["*/regenerate.py"]

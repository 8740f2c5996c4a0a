"""The original 0.1 test suite, ported to Python 3 (see test_events.py)."""

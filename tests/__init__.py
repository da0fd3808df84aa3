"""The test suite: one module per code area; shared helpers in ``tests.support``."""

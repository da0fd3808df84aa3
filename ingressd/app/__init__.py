"""The application: one ingressd instance wired together and kept running.

runtime      every stage connected, started and stopped in order (Ingressd, Options)
supervision  the long-running tasks, restarted when one dies
admin        /healthz, /metrics, /debug/*
"""

"""The application: one ingressd instance wired together, and its command line.

    runtime      every stage connected, started and stopped in order (Ingressd, Options)
    supervision  the long-running tasks, restarted when one dies
    admin        /healthz, /metrics, /debug/*
    arguments    the command line -> Options
    cli          ``ingressd run | render | check | record | replay``
"""

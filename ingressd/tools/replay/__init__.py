"""Trace replay: a recorded trace through the live pipeline, every decision collected.

replaying   runs the trace through Store, updateChannel, NginxController, syncQueue, worker
result      what a replay collected, per event and per sync, and its summary
report      the timeline and summary as text and JSON
plot        one PNG of the timeline and latencies (matplotlib)
"""

"""Tools for people around the controller.

check    the migration check
record   a cluster's event trace
replay   a trace through the pipeline, every decision collected
demo     the seed's example served for real
"""

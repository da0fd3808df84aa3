"""Tools for people around the controller: the migration check, trace record and replay, the demo.
"""

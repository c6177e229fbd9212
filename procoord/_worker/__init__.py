"""The worker side: what runs in a worker process and in the launcher that forks them.

Imports only the wire format (``procoord._wire``), the processor spec
(``procoord.processor``) and the errors, never the parent's machinery, so a worker
process and its launcher stay light. Nothing is imported here: ``python -m
procoord._worker.launcher`` loads only what it needs.
"""

"""The agent's probes: one module per step (DNS, TCP, HTTP), each returning a protocol result object.

Probes take their resolver settings, timeouts and TLS context as arguments (injectable I/O, as with
dnspython's ``backend=``), so tests drive them against real servers on 127.0.0.1.
"""

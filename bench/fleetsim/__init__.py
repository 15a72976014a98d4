"""The fleet simulator behind ``bench/fleet.py``: virtual agents against a real collector process.

Modules, one job each:

- ``world``: who the agents are (countries, provinces, carriers, network types) and what a measurement
  of a test-list target looks like on a given network at a given time (daily rhythm, background noise);
- ``events``: scripted events on the simulated clock (cuts, outages, targeted blocking, collector
  faults) and what the detector is expected to name for each;
- ``collector``: the collector as a subprocess (start, kill -9, restart on the same port, RSS);
- ``agents``: virtual agents with real Ed25519 keys, a spool and an uploader that retries;
- ``audit``: what was acknowledged versus what the database holds (exactly once);
- ``scenario``: the simulated clock that drives agents, events and detection passes;
- ``evaluate``: disruptions found versus events expected (pattern, regions, carriers, latency);
- ``capacity``: real-time paced load (largest fleet at p99 < 200 ms) and the concurrent-upload burst;
- ``report``: the summary table and the JSON file.

Traffic goes only to 127.0.0.1.
"""

"""End-to-end tests (run.py runs them) and their harness: util (ports,
processes, waits, temporary directories), sinkctl (volley-sink, SMTP
clients), daemon (volleyd and its API), dnsctl (unbound, scripted DNS)."""

"""Load generation with Locust: traffic shapes, payloads, the user classes and the subprocess runner.

Locust runs in its own process (gevent must not share a process with the rest of the harness);
only `locustfile.py` imports locust, and only inside that process.
"""

"""Short-lived shared state: values with a time to live, atomic consume, counters.

In-process when no Redis is configured; Redis otherwise, so that every server process
sees the same values.
"""

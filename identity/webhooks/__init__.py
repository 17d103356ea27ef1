"""Events for consuming services: signed webhooks delivered from a database outbox.

A service's change calls ``events.emit`` in its own transaction, which records the event and
one delivery per subscription that wants it; a rolled-back change therefore emits nothing,
and a committed one is delivered even across restarts and a consumer's downtime. The
dispatcher (``runtime.webhooks``) posts due deliveries, signed as ``identity.resource.webhooks``
describes, retrying with exponential backoff for about a day; a URL the address rules refuse is
given up at once.
"""

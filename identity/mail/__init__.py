"""Email: queued in the database with the change that causes it, sent by a background task.

Queuing in the caller's transaction means a rolled-back change sends nothing and a committed
one is never lost, even if the mail server is down or the process restarts.
"""

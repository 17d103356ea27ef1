"""Housekeeping: every process, every few minutes, deletes the rows that can no longer change
any answer (expired sessions, spent codes and tokens, sent mail...), a bounded batch per
transaction. The rules and their reasons are in ``repository``; the loop is ``housekeeper``.
"""

"""Security regression tests (docs/security.md): one test per attack that once got through.

Each test drives a real server on loopback (``tests.conftest``: a fresh database per module on
SQLite and on PostgreSQL) the way an attacker would, and asserts the refusal and that nothing
changed.
"""

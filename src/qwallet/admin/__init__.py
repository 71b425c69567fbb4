"""The admin console: server-rendered pages for operators under ``/admin``.

See ``docs/operator-guide.md``.
"""

from qwallet.admin.console import AdminConsole

__all__ = ["AdminConsole"]

"""The admin console's pages, one module per resource, each a part of ``AdminConsole``."""

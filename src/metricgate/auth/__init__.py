"""Authentication for access control (docs/design-auth.md B1, B3): password hashing off the event
loop, API token generation, the per-process verified-credential cache, and the first admin.
Features layer: reaches the database only through ``stores.base.AuthStore``."""

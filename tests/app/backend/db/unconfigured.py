"""An application module that fails at import, quoting its settings as it goes (as SQLAlchemy's
own URL errors do): `--app-models` must say so in one line, without the password."""

import os

raise RuntimeError(f"cannot use the database {os.environ.get('DATABASE_URL')} from here")

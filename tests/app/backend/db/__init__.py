"""The application's database layer (holds no models itself: `--app-models=backend.db` is one line)."""

"""The engine every client runs on: supervision, listener dispatch, the cache writer.
Private: nothing here is public API."""

"""examples/flask_app.py behind gevent's recommended first line: patch before anything."""

from gevent import monkey

monkey.patch_all()

from flask_app import app  # noqa: E402 - after patching, as gevent asks

__all__ = ["app"]

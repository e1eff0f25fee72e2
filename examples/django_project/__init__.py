"""A minimal Django project configured from Apollo (see ``settings.py`` and ``apps.py``)."""

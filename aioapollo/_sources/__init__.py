"""Sources of releases other than Apollo itself: namespace files on disk (``local_dir``, a
``bootstrap_dir`` snapshot), the ``overrides`` layered over Apollo's values, and the
watcher that notices edits. Private: nothing here is public API."""

"""The process runtime: fork generations, event-loop ownership, preforking servers, and
threads that survive gevent's monkey-patching. Private: nothing here is public API."""

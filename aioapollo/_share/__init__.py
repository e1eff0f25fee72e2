"""One long poll per host (``share_poll=True``): rendezvous, election, leader, follower and
their local wire protocol. Private: nothing here is public API."""

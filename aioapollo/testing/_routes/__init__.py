"""The test server's HTTP routes: the config service (``apollo``), the control API
(``control``) and the portal OpenAPI (``openapi``). Each handler takes the server as a
:class:`~.view.ServerView`."""

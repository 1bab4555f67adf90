"""The web app: a REST API and a browser page on :func:`classifiers.recognise`.

    facial-expressions serve [--host 127.0.0.1] [--port 8000] [--model FILE] [--workers N] [--catalogue FILE]

Modules, outermost first:

``serve``     the ``serve`` command: checks the model and catalogue, binds the socket, starts the
              analysis workers, then runs uvicorn on the app (one line per error, like every command)
``settings``  the server's settings, one frozen object
``app``       :func:`create_app`: the FastAPI application (routers, static page, local docs, errors)
``guard``     a pure ASGI layer in front of everything: Host check, bearer token, upload size
              limit while receiving, a deadline for slow uploads, security headers
``api``       the JSON endpoints under ``/api`` (analyze, recommend, model, health); another
              kind of upload (videos) is another router module beside it, included by ``app``
``uploads``   the private folder uploads are written to, and deleted from
``pool``      the bounded pool of analysis processes: 503 when full, a time budget per request
``worker``    what runs inside one analysis process: decode through :mod:`landmarks.io`'s checks,
              ``recognise``, JSON-ready results
``errors``    the refusals (status, one-line message, headers) and the library's errors mapped onto them
``docs``      the API documentation page, rendered on the server from the OpenAPI schema (no CDN)
``static/``   the page: plain HTML, CSS and ES modules, no library, nothing loaded from elsewhere

Nothing here is imported by ``facial-expressions predict`` or by the library packages.
"""

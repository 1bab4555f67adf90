"""The web app: a REST API and a browser page on :func:`classifiers.recognise` and, for videos,
:func:`facial_expressions.video.analyse_to_folder`.

    facial-expressions serve [--host 127.0.0.1] [--port 8000] [--model FILE] [--workers N] [--catalogue FILE]

Modules, outermost first:

``serve``     the ``serve`` command: checks the model and catalogue, binds the socket, starts the
              analysis workers, then runs uvicorn on the app (one line per error, like every command)
``settings``  the server's settings, one frozen object
``app``       :func:`create_app`: the FastAPI application (routers, static page, local docs, errors)
``guard``     a pure ASGI layer in front of everything: Host check, bearer token, upload size
              limit while receiving, a deadline for slow uploads, security headers
``api``       the JSON endpoints under ``/api`` (analyze, recommend, model, health)
``videos``    the video endpoints: ``POST /api/videos`` (a job id), ``GET /api/videos/{id}`` (progress,
              then the results), ``GET /api/videos/{id}/{file}`` (the job's output files)
``video_jobs`` the video jobs: at most N at once (503 beyond), one process each, private
              folders named by random ids, results swept after their time
``video_worker`` what runs inside a video job's process: ``analyse_to_folder`` with progress, the
              summary without server paths, the timeline thinned for the page
``processes`` where workers and video jobs come from: a fork server that has loaded the pipeline
``preload``   what that fork server imports and loads once
``uploads``   the private folder uploads are written to, and deleted from
``pool``      the bounded pool of analysis processes: 503 when full, a time budget per request
``worker``    what runs inside one analysis process: decode through :mod:`landmarks.io`'s checks,
              ``recognise``, JSON-ready results
``errors``    the refusals (status, one-line message, headers) and the library's errors mapped onto them
``docs``      the API documentation page, rendered on the server from the OpenAPI schema (no CDN)
``static/``   the page: plain HTML, CSS and ES modules (photo, webcam and video tabs), no library,
              nothing loaded from elsewhere

Nothing here is imported by ``facial-expressions predict`` or by the library packages.
"""

"""Applications built on the library's public API (``classifiers.api`` and
``classifiers.load_model``): the ``facial-expressions`` command line, and the video,
web and recommendation apps. Nothing in ``common``, ``landmarks``, ``features`` or
``classifiers`` imports this package.
"""

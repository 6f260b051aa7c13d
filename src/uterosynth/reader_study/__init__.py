"""Blinded expert reader study: build a study, serve it to raters, analyse the answers.

``create`` renders real and synthetic images identically under opaque ids, ``main.create_app``
serves the rater and admin pages (FastAPI + SQLAlchemy), ``analysis``/``report`` turn the
stored answers into statistics, ``results.json`` and ``report.html``.
"""

"""The local web service: :mod:`genimage.serve.app` (FastAPI routes), :mod:`genimage.serve.studio`
(models, one generation at a time, PNGs with records) and :mod:`genimage.serve.page` (the
browser page). ``genimage serve`` starts it."""

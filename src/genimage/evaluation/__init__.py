"""Model evaluation: draw samples from any family, measure them (:mod:`genimage.metrics`),
sweep samplers, and write ``report.json`` + ``report.html``."""

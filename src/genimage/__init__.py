"""genimage: learn the distribution of a set of images and generate new ones.

One continuous-time core (noise paths, objectives, samplers) serves diffusion and flow
matching; see ``genimage.paths``, ``genimage.objectives`` and ``genimage.samplers``.
"""

__version__ = "0.1.0"

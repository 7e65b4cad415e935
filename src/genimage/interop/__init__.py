"""Interoperability with other toolkits' model formats (Stable-Diffusion-format checkpoints,
diffusers folders): import them as genimage models, export genimage models to them."""

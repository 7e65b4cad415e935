"""Editing existing images with a trained diffusion / flow model.

* img2img (SDEdit; Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with
  Stochastic Differential Equations", Sec. 3): noise the input to an intermediate time set by
  ``strength`` and solve the reverse process from there;
* inpainting by known-region replacement (Song et al. 2021, "Score-Based Generative Modeling
  through Stochastic Differential Equations", App. I.2; the replacement step of Lugmayr et
  al. 2022, "RePaint"), applied to the model's *prediction* so that every sampler (Euler,
  Heun, DDIM, DPM-Solver++, DDPM) uses it unchanged;
* outpainting: inpainting of a canvas that shifts the input and leaves new pixels to fill;
* super-resolution (pixel-space models): DDNM (Wang et al. 2023), the same range-null-space
  rule as inpainting with block averaging as the degradation
  (:mod:`genimage.editing.known_region`);
* RePaint's resampling for the last three (:mod:`genimage.editing.resample`).

:class:`~genimage.editing.spec.EditSpec` describes an edit; ``generation.generate(edit=...)``
runs it through the edit plan (:mod:`genimage.editing.plan`: the start state, the registered
model wrappers in order, the sampling loop; a new edit kind registers a wrapper there);
``genimage edit`` is the command line.
"""

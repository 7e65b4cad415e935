"""Noise paths (schedules as data) and conversions between prediction types."""

from genimage.paths.base import PATHS, NoisePath, build_path
from genimage.paths.edm import EDMPath
from genimage.paths.linear import LinearPath
from genimage.paths.vp import VPCosine, VPLinear
from genimage.interop import sd_path as _sd_path  # noqa: F401,E402  (registers "sd-discrete")

__all__ = ["PATHS", "NoisePath", "build_path", "EDMPath", "LinearPath", "VPCosine", "VPLinear"]

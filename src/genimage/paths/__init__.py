"""Noise paths (schedules as data) and conversions between prediction types."""

from genimage.paths.base import PATHS, NoisePath, build_path
from genimage.paths.edm import EDMPath
from genimage.paths.linear import LinearPath
from genimage.paths.vp import VPCosine, VPLinear

__all__ = ["PATHS", "NoisePath", "build_path", "EDMPath", "LinearPath", "VPCosine", "VPLinear"]

"""Neural-operator building blocks (truncated-Fourier kernels)."""

from physml.layers.spectral import SpectralConv, SpectralConv1d, SpectralConv2d, SpectralConv3d

__all__ = ["SpectralConv", "SpectralConv1d", "SpectralConv2d", "SpectralConv3d"]

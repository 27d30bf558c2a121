"""Deterministic demo data for the local emulator (no personal data)."""

from emulator.seed.points import KINDS, PRODUCTS, PointSeed, generate_points

__all__ = ["KINDS", "PRODUCTS", "PointSeed", "generate_points"]

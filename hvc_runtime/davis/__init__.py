"""DAVIS dataset layout, the official J and F measures, and the official CSV output."""

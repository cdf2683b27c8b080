"""Learned architecture samplers (TNAS's transformer VAE)."""

"""Shared foundations every layer may import: config checks, data errors, seeded samplers.

Importing anything here has no side effects (no resolvers, no global state).
"""

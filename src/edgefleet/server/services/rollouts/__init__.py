"""Staged rollouts (ARCHITECTURE 3.7): a pure policy, its persistence, and the engine that applies it."""

"""Reusable pieces of the page."""

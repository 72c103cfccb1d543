"""The dashboard page, shipped with the app as package data."""

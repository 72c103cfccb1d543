"""The built-in sweep files."""

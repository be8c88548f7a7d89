"""Thin command-line wrappers; the work lives in the library modules."""

"""Automatic case and customer recognition: rules as data, an explainable trace, data promotion."""

"""Importers: specs written from something that already describes a model (`lazyspec import`)."""

"""Shared infrastructure: settings, database, AWS clients, logging, errors, security."""

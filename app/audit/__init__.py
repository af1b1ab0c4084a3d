"""Audit trail of reads and writes of financial and health records."""

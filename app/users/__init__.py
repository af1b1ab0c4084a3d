"""User personal, financial and health records in PostgreSQL."""

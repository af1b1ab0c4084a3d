"""Development and test tooling: local PostgreSQL and moto servers, AWS bootstrap, `make run`."""

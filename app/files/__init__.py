"""S3 objects: read JSON, merge-update with JSON Merge Patch, and streaming uploads."""

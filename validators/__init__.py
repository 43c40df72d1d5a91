"""The checks: each module returns findings, never prints."""

//! Integration tests: real imgmirror servers against a fixture origin on loopback.

"""Security services: authentication, sessions, permissions and the tamper-evident audit log."""

"""The schema: numbered SQL migrations and the runner that applies them."""

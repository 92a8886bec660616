"""Type-only checks of the SDK as users call it (see sdk_calls.py)."""

"""The shapeable mapping: its rules (pure) and how the config states them (reading)."""

"""The Textual app. Depends on core, never the reverse."""

"""The Textual dashboard: the only package that imports textual; it calls the core, never the reverse."""

"""The application core: the commands and queries (``service``), the settings, the policy file, the edge parsers."""

"""The composition root: command line, configuration, and the wiring of every component."""

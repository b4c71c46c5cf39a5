"""The bottom layer: settings, errors and names. Imports nothing else of Doc Bot."""

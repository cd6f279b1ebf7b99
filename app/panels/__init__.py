"""The main window's panels around the gallery and the viewer: the tag panel, the history of an
image's tags, the classes dialog and the status bar (counts and the running job)."""

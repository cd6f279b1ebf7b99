"""The image review view: zoom/pan of one image with the teacher's regions per class."""

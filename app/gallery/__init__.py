"""The thumbnail gallery: an id-only list model, a painting delegate, the grid view, the filter bar."""

"""The review loop in the window: train (training panel), tag in batch (batch tagger), review
(review panel: queue, thresholds and auto-accept, rounds), wired into docks and the Model menu."""

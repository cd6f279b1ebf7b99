"""Engine of mlic: store, data, models, training, metrics and the command line. No Qt here."""

__version__ = "0.1.0"

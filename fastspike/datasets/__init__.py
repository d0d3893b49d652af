"""Neuromorphic datasets: file decoders, event-to-frame integration, transforms, dataset classes."""
from .formats import (EVENT_DTYPE, FORMATS, EventFileError, detect_format, make_events, read_events,
                      read_shd)

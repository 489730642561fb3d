"""twohead: a DVC pipeline that fine-tunes a text encoder with a Pick/Decline head and a category head."""

__version__ = "0.1.0"

"""edgesplit: exact model-parallel CNN inference across edge servers (core library, no I/O)."""

__version__ = "0.1.0"

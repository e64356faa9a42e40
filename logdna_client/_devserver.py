"""The devserver's former home, kept so ``from logdna_client._devserver import DevServer``
still works; the code lives in the ``logdna_client.devserver`` package."""

from .devserver import MAX_BODY_BYTES, DevServer, RequestRecord, dump_line, format_line, isatty

__all__ = ["MAX_BODY_BYTES", "DevServer", "RequestRecord", "dump_line", "format_line", "isatty"]

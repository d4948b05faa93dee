"""The kit's reading of a SQL_ASCII database: bytes whose encoding the server does not know.

psycopg2 reads them as ASCII and raises on the first other byte (a Korean comment, written
as UTF-8 by the application). The kit reads them as UTF-8 instead, keeping any byte that is
not UTF-8 as a surrogate (PEP 383), and writes them back the same way: nothing raises,
nothing is lost. Imported by `dburl`, before any connection.
"""

from __future__ import annotations

import codecs
from typing import Any

import psycopg2.extensions

NAME = "azak_sql_ascii"


def _encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return codecs.utf_8_encode(text, "surrogateescape")


def _decode(data: Any, errors: str = "strict") -> tuple[str, int]:
    return codecs.utf_8_decode(bytes(data), "surrogateescape", True)


def _search(name: str) -> codecs.CodecInfo | None:
    return codecs.CodecInfo(_encode, _decode, name=NAME) if name == NAME else None


codecs.register(_search)
psycopg2.extensions.encodings["SQL_ASCII"] = NAME
psycopg2.extensions.encodings["SQLASCII"] = NAME

"""OpenAI's BPE encodings, read from the files shipped in ``switchboard/data/``.

Plain ``tiktoken.get_encoding`` downloads its rank files on first use (and fails offline); here
the ranks come from package data only, checked against the SHA-256 that tiktoken itself pins for
the published files, and are handed to ``tiktoken.Encoding``. Nothing is fetched, ever.

Building an encoding takes about half a second, so the gateway builds both at start-up
(:func:`preload`, off the event loop); after that :func:`get` is a dictionary read.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from importlib import resources
from typing import Literal

import tiktoken

EncodingName = Literal["o200k_base", "cl100k_base"]

ENDOFTEXT = "<|endoftext|>"
ENDOFPROMPT = "<|endofprompt|>"

# The regular expressions that split text before BPE, as tiktoken defines them
# (tiktoken_ext/openai_public.py). They are part of each encoding's definition.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# name -> (split pattern, special tokens, SHA-256 of the rank file as tiktoken pins it).
SPECS: dict[str, tuple[str, dict[str, int], str]] = {
    "o200k_base": (
        _O200K_PAT,
        {ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        _CL100K_PAT,
        {
            ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            ENDOFPROMPT: 100276,
        },
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

_loaded: dict[str, tiktoken.Encoding] = {}
_lock = threading.Lock()


class EncodingFileError(RuntimeError):
    """A shipped rank file is missing or is not the published one."""


def read_ranks(name: str) -> dict[bytes, int]:
    """The mergeable ranks of ``name`` from its shipped ``.tiktoken`` file, hash checked."""
    _, _, expected = SPECS[name]
    ref = resources.files("switchboard.data").joinpath(f"{name}.tiktoken")
    try:
        data = ref.read_bytes()
    except OSError as e:
        raise EncodingFileError(f"the encoding file {name}.tiktoken is missing from the package") from e
    if hashlib.sha256(data).hexdigest() != expected:
        raise EncodingFileError(f"the encoding file {name}.tiktoken does not match its published hash")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def get(name: str) -> tiktoken.Encoding:
    """The encoding ``name`` (``o200k_base`` or ``cl100k_base``), built once per process."""
    enc = _loaded.get(name)
    if enc is not None:
        return enc
    with _lock:  # two threads asking at once build it once
        enc = _loaded.get(name)
        if enc is None:
            pat, special, _ = SPECS[name]
            ranks = read_ranks(name)
            enc = tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=special)
            _loaded[name] = enc
    return enc


def preload() -> None:
    """Build every shipped encoding now (blocking: run it in a thread from async code)."""
    for name in SPECS:
        get(name)


# Short strings recur in every request (roles, names, one-line prompts): their counts are kept,
# per encoding, so the request path does not call the tokenizer for "user" each time.
_SHORT = 32
_SHORT_MAX = 50_000
_short: dict[str, dict[str, int]] = {}


def short_counts(name: str) -> dict[str, int]:
    """The kept counts of short strings under encoding ``name`` (``count_text`` fills it): a
    counter reads a known string's count here without a call."""
    known = _short.get(name)
    if known is None:
        known = _short[name] = {}
    return known


def count_text(text: str, name: str) -> int:
    """Tokens of ``text``; special-token strings in it count as the plain text they are."""
    if len(text) > _SHORT:
        return len(get(name).encode_ordinary(text))
    known = _short.get(name)
    if known is None:
        known = _short[name] = {}
    n = known.get(text)
    if n is None:
        if len(known) >= _SHORT_MAX:
            known.clear()
        n = known[text] = len(get(name).encode_ordinary(text))
    return n

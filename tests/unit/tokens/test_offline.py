"""Counting needs no network: in a process where every connection is refused and tiktoken's
download cache is empty, plain tiktoken cannot load an encoding, and the gateway counts anyway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.tokens import encodings

SCRIPT = r"""
import json, socket, sys

def refuse(*args, **kwargs):
    raise OSError("network disabled for this test")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

import tiktoken
try:
    tiktoken.get_encoding("o200k_base")
    plain = "loaded"
except Exception as e:
    import requests
    plain = "unreachable" if isinstance(e, requests.exceptions.ConnectionError) else repr(e)

from switchboard import tokens
tokens.preload()
request = {"messages": [{"role": "user", "content": "Hello, world! Grüße aus Zürich."}]}
print(json.dumps({
    "plain_tiktoken": plain,
    "gpt-4o": tokens.estimate(request, "chat", model="gpt-4o"),
    "gpt-4": tokens.estimate(request, "chat", model="gpt-4"),
    "text": tokens.count_text("tiktoken is great!", "cl100k_base"),
}))
"""


def test_counting_works_with_the_network_unreachable(tmp_path: Path) -> None:
    empty_cache = tmp_path / "cache"
    empty_cache.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": ":".join(p for p in sys.path if p),
        "TIKTOKEN_CACHE_DIR": str(empty_cache),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HOME": str(tmp_path),
    }
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["plain_tiktoken"] == "unreachable"  # the environment really is offline
    # "tiktoken is great!" is 6 tokens in cl100k_base (the cookbook's example).
    assert result["text"] == 6
    assert result["gpt-4o"] > 0 and result["gpt-4"] > 0
    assert list(empty_cache.iterdir()) == []  # nothing was cached, so nothing was fetched


def test_a_rank_file_that_is_not_the_published_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pat, special, _ = encodings.SPECS["cl100k_base"]
    monkeypatch.setitem(encodings.SPECS, "cl100k_base", (pat, special, "0" * 64))
    with pytest.raises(encodings.EncodingFileError, match="published hash"):
        encodings.read_ranks("cl100k_base")


def test_the_shipped_files_hold_the_full_vocabularies() -> None:
    assert len(encodings.read_ranks("o200k_base")) == 199998
    assert len(encodings.read_ranks("cl100k_base")) == 100256
    assert encodings.get("o200k_base").n_vocab == 200019

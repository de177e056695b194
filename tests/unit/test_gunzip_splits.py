"""upstream/gunzip.py against gzip.decompress: the same content for every way a body of members
(empty, small, large, stored or compressed) is cut across decompress() calls, cuts on member
ends included; the member bound counted across calls; and the bound on the output signalled."""

from __future__ import annotations

import gzip
import itertools
import random

import pytest

from switchboard.upstream.gunzip import Gunzip, TooManyMembers


def _body(rng: random.Random) -> tuple[list[bytes], bytes]:
    members, plain = [], []
    for _ in range(rng.choice([1, 2, 3, 7, 40])):
        size = rng.choice([0, 0, 1, 63, 64, 65, 300, 5000, 70000])
        text = rng.randbytes(min(size, 3000)) if rng.random() < 0.4 else (b"abc" * size)[:size]
        plain.append(text)
        members.append(gzip.compress(text, compresslevel=rng.choice([0, 1, 9]), mtime=0))
    return members, b"".join(plain)


@pytest.mark.parametrize("seed", range(8))
def test_every_split_gives_gzips_content(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        members, plain = _body(rng)
        body = b"".join(members)
        assert gzip.decompress(body) == plain
        cuts = set(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.choice([0, 1, 3, 20]))))
        ends, at = [], 0
        for member in members:
            at += len(member)
            ends.append(at)
        cuts |= set(rng.sample(ends, min(len(ends), 3)))  # a call ending where a member does
        bounds = [0, *sorted(cuts), len(body)]
        decoder = Gunzip()
        got = b"".join(decoder.decompress(body[a:b], 1 << 30) for a, b in itertools.pairwise(bounds))
        assert not decoder.unconsumed_tail
        assert got + decoder.flush() == plain
        assert decoder.eof


@pytest.mark.parametrize(("members", "ok"), [(64, True), (65, False)])
def test_members_counted_across_calls(members: int, ok: bool) -> None:
    body = b"".join(gzip.compress(b"m%d" % i, mtime=0) for i in range(members))
    decoder = Gunzip(64)
    try:
        got = b"".join(decoder.decompress(body[i:i + 7], 1 << 20) for i in range(0, len(body), 7))
    except TooManyMembers:
        assert not ok
    else:
        assert ok and got == b"".join(b"m%d" % i for i in range(members))


@pytest.mark.parametrize("seed", range(4))
def test_output_past_the_bound_is_signalled(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        members, plain = _body(rng)
        limit = rng.randrange(1, len(plain) + 2)
        decoder = Gunzip()
        out = decoder.decompress(b"".join(members), limit)
        assert len(out) <= limit and plain.startswith(out)
        if len(plain) > limit:
            assert decoder.unconsumed_tail


def test_resumed_from_unconsumed_tail_as_zlib_is() -> None:
    """zlib's contract, which the class docstring offers: feed unconsumed_tail back for the rest.
    (No caller resumes today: upstream/http1.py and http/asgi.py refuse the body instead.)"""
    body = gzip.compress(b"a" * 100, mtime=0) + gzip.compress(b"b" * 100, mtime=0)
    decoder = Gunzip()
    out = decoder.decompress(body, 100)
    for _ in range(4):
        if decoder.unconsumed_tail:
            out += decoder.decompress(decoder.unconsumed_tail, 100)
    assert out == b"a" * 100 + b"b" * 100

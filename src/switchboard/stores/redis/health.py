"""Deployment health shared by every instance (routing/health.py): consecutive failures, the
cooldown's end, and the half-open probe's claim, in Redis.

A deployment is a hash ``sb:hc:{hc}:<group>\\x1f<deployment>`` holding ``streak`` (failures in
a row, over every instance) and ``until`` (the cooldown's end, ms); its probe claim is the key
``...:probe`` holding the probe's token (``<instance id>:<n>``, one per probe), set with NX and
a short TTL (extended by its holder alone once the probe is sent), so one instance at a time
probes it, a claim its holder never used lapses within seconds, and a probe that ended saying
nothing about the deployment has its claim dropped by its holder; a late release or extension
by an older probe of the same instance does not touch a newer claim. Every key carries the same
hash tag. Time is the Redis server's, so every instance agrees on the cooldown's end; tests may
pass a clock.

The deployments out of traffic are also listed in the set ``sb:hc:{hc}:out`` (``<group>\x1f
<deployment>``; added when a cooldown opens, removed by the probe's answer), so an instance that
starts reads them in two round trips (:meth:`RedisHealth.out`) instead of scanning every key,
and learns what the others heard on the change feed before it started.
"""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.stores.clock import Clock
from switchboard.stores.protocols import Claim, Failure
from switchboard.stores.redis.client import LUA_NOW, PREFIX
from switchboard.stores.redis.silence import guarded, silence_for

# The hash of a deployment whose failures are not counted any more expires after this.
IDLE_MS = 3_600_000
# The deployments out of traffic (cooling down or half-open), for an instance that starts.
OUT = f"{PREFIX}hc:{{hc}}:out"

# KEYS: the hash, its probe claim, the set of deployments out. ARGV: now, threshold, cooldown
# ms, force (1: open now), the set's member. Returns {opened (0/1), cooling ms}.
FAIL = LUA_NOW + """
local threshold = tonumber(ARGV[2])
local ms = tonumber(ARGV[3])
local untilms = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if untilms > now and ARGV[4] ~= '1' then
  return {0, untilms - now}
end
local streak = redis.call('HINCRBY', KEYS[1], 'streak', 1)
if streak >= threshold or ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'until', now + ms, 'streak', 0)
  redis.call('DEL', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ms + """ + str(IDLE_MS) + """)
  redis.call('SADD', KEYS[3], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ms + """ + str(IDLE_MS) + """)
  return {1, ms}
end
redis.call('PEXPIRE', KEYS[1], """ + str(IDLE_MS) + """)
return {0, 0}
"""

# ARGV: now, probe ttl ms, holder (a probe's token, ``<instance>:<n>``). Returns {claimed (0/1),
# cooling ms}. A claim of the same instance is taken over by the new token (it asked, then sent
# nothing in time, and asks anew: its own probe out would not ask).
CLAIM = LUA_NOW + """
local untilms = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if untilms > now then
  return {0, untilms - now}
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', tonumber(ARGV[2])) then
  return {1, 0}
end
local held = redis.call('GET', KEYS[2])
local instance = string.match(ARGV[3], '^[^:]*:') or ARGV[3]
if held and (held == ARGV[3] or string.sub(held, 1, #instance) == instance) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[2]))
  return {1, 0}
end
return {0, 0}
"""

# ARGV: holder, ttl ms. Extends the claim only when ``holder`` still holds it. Returns 0/1.
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# ARGV: holder. Drops the claim only when ``holder`` still holds it. Returns 0/1.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisHealth:
    def __init__(self, client: Redis, clock: Clock | None = None) -> None:
        self._redis = client
        self._clock = clock
        # Every call fails at once while Redis is silent (stores/redis/silence.py): a request may
        # wait for the claim, and the reports after each answer (routing/health.py) would each
        # hold a task and a pooled connection for the whole reply timeout; their callers already
        # keep the health in this process when Redis cannot be reached.
        self._silence = silence_for(client)
        self._fail = guarded(client, client.register_script(FAIL))
        self._claim = guarded(client, client.register_script(CLAIM))
        self._extend = guarded(client, client.register_script(EXTEND))
        self._release = guarded(client, client.register_script(RELEASE))

    def _now(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1000))

    @staticmethod
    def _key(group: str, deployment: str) -> str:
        return f"{PREFIX}hc:{{hc}}:{_member(group, deployment)}"

    async def failed(self, group: str, deployment: str, threshold: int, cooldown_ms: int,
                     force: bool = False) -> Failure:
        """Count a failure; the cooldown opens when the streak reaches ``threshold`` (or at once
        with ``force``: a failed probe, a failure rate seen by one instance)."""
        key = self._key(group, deployment)
        opened, ms = await self._fail(keys=[key, key + ":probe", OUT],
                                      args=[self._now(), threshold, cooldown_ms, "1" if force else "0",
                                            _member(group, deployment)])
        return Failure(bool(int(opened)), int(ms))

    async def succeeded(self, group: str, deployment: str, probe: bool = False) -> None:
        """An answer: the streak starts again; after a probe, the cooldown is over."""
        await self._silence.call(lambda: self._succeeded(group, deployment, probe))

    async def _succeeded(self, group: str, deployment: str, probe: bool) -> None:
        key = self._key(group, deployment)
        if not probe:
            await self._redis.hdel(key, "streak")
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(key, "streak", "until")
            pipe.delete(key + ":probe")
            pipe.srem(OUT, _member(group, deployment))
            await pipe.execute()

    async def claim_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> Claim:
        """Claim the half-open probe for ``holder`` (a probe's token, ``<instance>:<n>``): one
        holder at a time, for ``ttl_ms`` at most unless the holder extends it once the probe is
        really sent (:meth:`extend_probe`). A claim of the same instance passes to ``holder``."""
        key = self._key(group, deployment)
        claimed, ms = await self._claim(keys=[key, key + ":probe"], args=[self._now(), ttl_ms, holder])
        return Claim(bool(int(claimed)), int(ms))

    async def extend_probe(self, group: str, deployment: str, ttl_ms: int, holder: str) -> bool:
        """Keep ``holder``'s claim ``ttl_ms`` longer (the probe is out); False if it lost it."""
        key = self._key(group, deployment) + ":probe"
        return bool(int(await self._extend(keys=[key], args=[holder, ttl_ms])))

    async def release_probe(self, group: str, deployment: str, holder: str) -> bool:
        """Drop ``holder``'s claim (its probe ended saying nothing about the deployment), so
        any instance may probe at once; False if it did not hold it."""
        key = self._key(group, deployment) + ":probe"
        return bool(int(await self._release(keys=[key], args=[holder])))

    async def cooling_ms(self, group: str, deployment: str) -> int:
        """How long the deployment is still cooling down (0: it is not)."""
        return await self._silence.call(lambda: self._cooling_ms(group, deployment))

    async def _cooling_ms(self, group: str, deployment: str) -> int:
        raw = await self._redis.hget(self._key(group, deployment), "until")
        if raw is None:
            return 0
        return max(0, int(raw) - await self._server_ms())

    async def out(self) -> dict[tuple[str, str], int]:
        """Every deployment out of traffic, by (group, deployment): how long it is still cooling
        down in ms, 0 when half-open (its cooldown is over and no probe has answered yet). Read
        once, by an instance that starts. Members whose deployment is back (its hash expired, or a
        probe's answer was lost) are dropped from the set."""
        return await self._silence.call(self._out)

    async def _out(self) -> dict[tuple[str, str], int]:
        # Bytes from this client (decode_responses off); names as written by _member.
        members = sorted(_text(m) for m in await self._redis.smembers(OUT))
        if not members:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hget(f"{PREFIX}hc:{{hc}}:{member}", "until")
            untils = await pipe.execute()
        now = await self._server_ms()
        found: dict[tuple[str, str], int] = {}
        stale: list[str] = []
        for member, until in zip(members, untils, strict=True):
            group, sep, deployment = member.partition("\x1f")
            if until is None or not sep:
                stale.append(member)
                continue
            found[(group, deployment)] = max(0, int(until) - now)
        if stale:
            await self._redis.srem(OUT, *stale)
        return found

    async def _server_ms(self) -> int:
        if self._clock is not None:
            return int(self._clock() * 1000)
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _member(group: str, deployment: str) -> str:
    return f"{group}\x1f{deployment}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""The shared cache in Redis: bytes values with a server-side expiry (``SET ... PX``).

Its callers (MCP OAuth states, MCP pass-through clients) are on the request path: every call
honours the client's "Redis is silent" mark (stores/redis/silence.py), failing at once while it
is set instead of holding the request for the whole reply timeout, and sets it on a timeout."""

from __future__ import annotations

from redis.asyncio import Redis

from switchboard.stores.redis.batch import batch_for
from switchboard.stores.redis.client import PREFIX
from switchboard.stores.redis.silence import silence_for

# GET, and PEXPIRE only when the value begins with ARGV[2] (its owner's mark: another caller
# presenting the key must not keep it alive). Nothing happens to a key that is gone. KEYS[2], when
# given: the set of ADD_COUNTED the key is counted in, kept at least as long as the key.
TOUCH = """
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[2])) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  if KEYS[2] and redis.call('PTTL', KEYS[2]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
  end
end
return value
"""

# SET KEYS[1] (ARGV[1], for ARGV[2] ms) only when the set KEYS[2] names fewer than ARGV[3] keys
# that still exist (those gone, deleted or expired, are taken out of it), then name it there too.
# The set lives as long as its longest-lived key (TOUCH extends it with the key). Its members are
# keys the script reads without declaring them: fine on a single Redis, as the admission script's
# two hash tags are (stores/redis/admission.py).
ADD_COUNTED = """
local live = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', member) == 1 then
    live = live + 1
  else
    redis.call('SREM', KEYS[2], member)
  end
end
if live >= tonumber(ARGV[3]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""


class RedisCache:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._silence = silence_for(client)
        # On the request path (an MCP session's lookup): it joins the pass's pipeline of scripts
        # (stores/redis/batch.py), whose calls fail at once while Redis is silent.
        self._touch = batch_for(client).script(TOUCH)
        self._add_counted = client.register_script(ADD_COUNTED)  # once per MCP session opened

    async def get(self, key: str) -> bytes | None:
        value = await self._silence.call(lambda: self._client.get(PREFIX + "cache:" + key))
        # The client is opened with decode_responses=False: values come back as bytes.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        await self._silence.call(
            lambda: self._client.set(PREFIX + "cache:" + key, value, px=max(1, round(ttl * 1000))))

    async def touch(self, key: str, ttl: float, prefix: bytes = b"",
                    group: str | None = None) -> bytes | None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        keys = [PREFIX + "cache:" + key]
        if group is not None:
            keys.append(PREFIX + "cache:" + group)
        value = await self._touch(keys, [max(1, round(ttl * 1000)), prefix])
        return value.encode() if isinstance(value, str) else value

    async def add_counted(self, key: str, value: bytes, ttl: float, group: str, limit: int) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        stored = await self._silence.call(lambda: self._add_counted(
            keys=[PREFIX + "cache:" + key, PREFIX + "cache:" + group],
            args=[value, max(1, round(ttl * 1000)), limit]))
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._silence.call(lambda: self._client.delete(PREFIX + "cache:" + key))

    async def add(self, key: str, value: bytes, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError("ttl must be > 0 seconds")
        stored = await self._silence.call(lambda: self._client.set(
            PREFIX + "cache:" + key, value, px=max(1, round(ttl * 1000)), nx=True))
        return bool(stored)

    async def take(self, key: str) -> bytes | None:
        return await self._silence.call(lambda: self._take(key))

    async def _take(self, key: str) -> bytes | None:
        # GET and DEL in one MULTI/EXEC (GETDEL needs Redis 6.2; this works on any version).
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(PREFIX + "cache:" + key)
            pipe.delete(PREFIX + "cache:" + key)
            value, _ = await pipe.execute()
        return value.encode() if isinstance(value, str) else value

"""The Lua scripts of ownership — the fenced session write (B9) and the leases that hand out the
fencing tokens — with one rule for a key that holds a value of the wrong kind: the scripts'
text, the SHA1 pipelines name a script by (`EVALSHA`), and reading their replies' items.

Owns: the fence key (`keys.fence_key`, a counter incremented on every lease acquisition),
the script that writes a session's status, its outbox entry and its pending record only
while the writer's token is still the session's token (else nothing is written; queued and
answered by the status store, `service.store`), and the lease scripts (run by
`service.lease`). `load_scripts` puts the scripts pipelines name by SHA in Redis's script
cache (at start, and when `is_noscript` recognises Redis's answer for one it does not hold:
a restart, `SCRIPT FLUSH`, a failover). Must not: talk to Redis beyond loading the scripts,
or decide what to write.

Malformed values (a hash where a string belongs, a non-numeric counter, garbage in a lease):
- a counter (per-session `seq`, the fence) that is not an integer is replaced by Redis's
  clock in milliseconds, larger than any count it held, so what comes after still orders
  after everything before it (the receiver sees a gap in `seq`);
- a lease, an idempotency key or a status of the wrong type is deleted (then written as
  usual), and so is a lease with no expiry (every lease has one); an outbox stream of the
  wrong type is renamed to `keys.OUTBOX_KEY + ":malformed"`.
Each replacement is reported in the script's reply (`notes`), so the caller counts and logs it.
A fence of the wrong type refuses the write (the lease's renewal fails too, and the next
owner's acquisition replaces it).
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from service.redis_connect import is_cluster_client
from service.status_values import READ_STATUS_LUA

# kind(key) -> Redis type name; bump(key, notes) -> INCR, or the clock in ms when not an integer;
# drop_odd(key, wanted, notes) deletes a key whose type is neither `wanted` nor none.
_LIB = """
local function kind(key) return redis.call('TYPE', key)['ok'] end
local function bump(key, notes)
  local k = kind(key)
  if k == 'none' or k == 'string' then
    local n = redis.pcall('INCR', key)
    if type(n) == 'number' then return n end
  end
  local t = redis.call('TIME')
  local fresh = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('DEL', key)
  redis.call('SET', key, string.format('%.0f', fresh))
  notes[#notes + 1] = key .. ' was a ' .. k .. ' that is not an integer counter: restarted at ' .. string.format('%.0f', fresh)
  return fresh
end
local function drop_odd(key, wanted, notes)
  local k = kind(key)
  if k ~= wanted and k ~= 'none' then
    redis.call('DEL', key)
    notes[#notes + 1] = key .. ' was a ' .. k .. ', expected a ' .. wanted .. ': deleted'
  end
end
local function fence_of(key)
  if kind(key) ~= 'string' then return nil end
  return redis.call('GET', key)
end
"""

# KEYS: 1 fence, 2 status, 3 pending record, 4 outbox, 5 seq, 6 update id, 7 outbox quarantine
# ARGV: 1 token ('' = unfenced), 2 status ('' = none), 3 pending 'keep'|'clear'|'set', 4 attempt,
# 5 due_at_s, 6 started_at_s ('' = none), 7 update_id ('' = no outbox entry), 8 session id,
# 9 priority, 10 at_s, 11 idempotency TTL s, 12 counted ('0' = an uncounted wait, else counted).
# Returns {1, seq (0: no entry), notes...}, or {0, the session's token now} with nothing written.
# A retried write (same update_id) finds its idempotency key and reuses its seq: no second entry.
_WRITE_BODY = """
local notes = {}
if ARGV[1] ~= '' then
  local now = fence_of(KEYS[1])
  if now ~= ARGV[1] then return {0, now or ''} end
end
local seq = 0
if ARGV[7] ~= '' then
  drop_odd(KEYS[6], 'string', notes)
  local known = tonumber(redis.call('GET', KEYS[6]) or '')
  if known then
    seq = known
  else
    local ok = kind(KEYS[4])
    if ok ~= 'stream' and ok ~= 'none' then
      redis.call('RENAME', KEYS[4], KEYS[7])
      notes[#notes + 1] = KEYS[4] .. ' was a ' .. ok .. ', expected a stream: renamed to ' .. KEYS[7]
    end
    seq = bump(KEYS[5], notes)
    redis.call('XADD', KEYS[4], '*', 'update_id', ARGV[7], 'session_id', ARGV[8], 'status', ARGV[2],
               'priority', ARGV[9], 'seq', string.format('%.0f', seq), 'at_s', ARGV[10])
    redis.call('SET', KEYS[6], string.format('%.0f', seq), 'EX', ARGV[11])
  end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] ~= 'keep' then redis.call('DEL', KEYS[3]) end
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[3], 'attempt', ARGV[4], 'due_at_s', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'started_at_s', ARGV[6]) end
  if ARGV[12] == '0' then redis.call('HSET', KEYS[3], 'counted', '0') end
end
local reply = {1, seq}
for _, note in ipairs(notes) do reply[#reply + 1] = note end
return reply
"""
WRITE_LUA = _LIB + _WRITE_BODY

# KEYS: 1 lease, 2 fence; ARGV: 1 owner id, 2 TTL ms. Returns {1, token, notes...} or {0}.
# Every acquisition (even of a lease this owner still holds) takes a new token: whatever an
# older holder of this session still has queued is fenced off.
ACQUIRE_LUA = _LIB + """
local notes = {}
drop_odd(KEYS[1], 'string', notes)
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('DEL', KEYS[1])
  notes[#notes + 1] = KEYS[1] .. ' had no expiry (no lease is written without one): deleted'
end
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return {0} end
local token = bump(KEYS[2], notes)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local reply = {1, token}
for _, note in ipairs(notes) do reply[#reply + 1] = note end
return reply
"""

# KEYS: lease 1, fence 1, lease 2, fence 2, ...; ARGV: 1 owner id, 2 TTL ms, 2 + i the token of
# pair i ('' = not checked). Extends and returns the 1-based pair indexes still ours with our token.
RENEW_LUA = _LIB + """
local held = {}
for i = 1, #KEYS / 2 do
  local lease, fence, token = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 + i]
  if kind(lease) == 'string' and redis.call('GET', lease) == ARGV[1]
      and (token == '' or fence_of(fence) == token) then
    redis.call('PEXPIRE', lease, ARGV[2])
    held[#held + 1] = i
  end
end
return held
"""

RELEASE_LUA = _LIB + """
if kind(KEYS[1]) == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def script_sha(text: str) -> str:
    """The SHA1 Redis names a script by (`EVALSHA`, `SCRIPT LOAD`'s answer)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


WRITE_SHA = script_sha(WRITE_LUA)
READ_STATUS_SHA = script_sha(READ_STATUS_LUA)  # the status read (`service.status_values`)

# One tick's scripted requests on a single Redis, in one call (`service.tick_batch`): the scripts
# above as functions, run in order, each in a pcall so one that fails answers its own error.
# ARGV: 1 the number of calls, 2 the calls as one MessagePack array (packing it costs the service
# far less than a command argument each): per call its script's number in BATCH_OPS, its key count,
# its argument count, its keys, its arguments. No KEYS: a batch runs only on a single Redis, never
# on a cluster, which alone needs every key declared. Returns one reply per call.
BATCH_OPS: dict[str, int] = {WRITE_SHA: 1, READ_STATUS_SHA: 2}  # the scripts a batch can run, by SHA
BATCH_LUA = _LIB + "local function write(KEYS, ARGV)" + _WRITE_BODY + "end\n" \
    + "local function read_status(KEYS, ARGV)" + READ_STATUS_LUA + "end\n" + """
local ops = {write, read_status}
local items = cmsgpack.unpack(ARGV[2])
local replies = {}
local at = 1
for i = 1, tonumber(ARGV[1]) do
  local op, nkeys, nargs = ops[items[at]], items[at + 1], items[at + 2]
  local call_keys, call_args = {}, {}
  for j = 1, nkeys do call_keys[j] = items[at + 2 + j] end
  for j = 1, nargs do call_args[j] = items[at + 2 + nkeys + j] end
  at = at + 3 + nkeys + nargs
  local ok, reply = pcall(op, call_keys, call_args)
  if not ok and type(reply) ~= 'table' then reply = redis.error_reply(tostring(reply)) end
  replies[i] = reply
end
return replies
"""
BATCH_SHA = script_sha(BATCH_LUA)
# the scripts queued on pipelines by SHA: what `load_scripts` loads
PIPELINED_SCRIPTS: dict[str, str] = {WRITE_SHA: WRITE_LUA, READ_STATUS_SHA: READ_STATUS_LUA, BATCH_SHA: BATCH_LUA}


async def load_scripts(redis: Any) -> None:
    """Put every script queued by SHA into Redis's script cache (one round trip; on a cluster
    one SCRIPT LOAD per script, which the client sends to every primary)."""
    if is_cluster_client(redis):
        for text in PIPELINED_SCRIPTS.values():
            await redis.script_load(text)
        return
    async with redis.pipeline(transaction=False) as pipe:
        for text in PIPELINED_SCRIPTS.values():
            pipe.script_load(text)
        await pipe.execute()


def is_noscript(value: Any) -> bool:
    """Is `value` Redis's answer to an `EVALSHA` of a script it does not hold (NOSCRIPT)?"""
    return isinstance(value, NoScriptError) or (isinstance(value, ResponseError) and "NOSCRIPT" in str(value))


def reply_text(value: Any) -> str:
    """A script reply item as text (notes, tokens): bytes decoded, undecodable bytes replaced."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)



"""The Lua scripts of the Redis health backend: :mod:`failover.health.machine`, line for line.

One hash per deployment holds the machine's flat :class:`~failover.health.machine.BreakerRecord`
(fields ``state failures until break probe error``; a missing hash is the fresh record). Three
scripts read and move it, each atomic in Redis, each one round trip:

- :data:`READ` returns ``now`` and the records of several deployments as stored (``plan`` and
  ``status`` run :func:`machine.plan` on them in Python: reading needs no atomicity beyond one
  snapshot).
- :data:`ADMIT` runs :func:`machine.admit` and writes the record when it changed.
- :data:`REPORT` runs :func:`machine.report` and writes the record when it changed.

Each answer is one string of space-separated fields (none contains a space): one bulk reply
parses several times faster in redis-py than an array of them. READ hands a stored value with a
space in it, or longer than any we write, as ``!`` (which no field accepts), so a foreign value
cannot shift the fields after it.

Anything may be in Redis: another program, an old version, a hand-typed ``HSET``. ADMIT and
REPORT check the stored record as :func:`machine.plausible` does (numbers as our ``fmt`` writes
them: decimal, finite, not negative, within the bounds no policy exceeds, generated from
:data:`machine.MAX_WAIT` and :data:`machine.MAX_AHEAD` and not from this gateway's config, so that
gateways running different configs on one Redis honour each other's records; a known state and
error class; the four fields ``save`` always writes present; a hash at all, and not one holding
only someone else's fields, without a TTL). A record that fails is treated as absent: deleted, and
written afresh only if the move changes it; the answer says so (``reset``). The Python side
checks READ's raw fields by the same rules (:mod:`failover.state.redis_store`), and a
differential test pins the two together.

``now`` is Redis ``TIME`` (shared by every gateway, unlike monotonic clocks) plus ``ARGV[1]``,
a shift in seconds that is 0 in production and lets tests move shared time forward the way a
``ManualClock`` moves local time. Numbers travel as ``%.17g`` strings, which round-trip a double
exactly, so a probe lease handed to Python compares equal when it comes back in a report.

The effect table and the holds are generated from :data:`machine.EFFECTS` and
:data:`machine.HOLDS`, so the two implementations cannot disagree on what a class does; the
transitions themselves are checked against the Python machine by a differential test. Lua
reserves ``until`` and ``break``: in the scripts the record's fields are ``ends`` and ``brk``.

Every write sets the hash to expire a day after its last pending moment (end of a break, a
cooldown or a probe lease): a deployment removed from every config leaves no key behind, and a
deployment idle for a day forgets its consecutive-failure count, nothing more. A stored record
that is plausible but has no TTL (written by someone else) is given one on the first ADMIT or
REPORT that reads it, so no key of ours lives for ever.
"""

from __future__ import annotations

from failover.health import machine

__all__ = ["ADMIT", "NUMBER_CHARACTERS", "READ", "RECORD_FIELDS", "REPORT"]

RECORD_FIELDS = 6
"""Strings per record in a script's answer: state, failures, until, break, probe, error."""

NUMBER_CHARACTERS = 32
"""The longest number a record holds as text (``%.17g`` writes at most 24 characters)."""

KEEP_SECONDS = 86_400

_EFFECTS = ", ".join(f"{cls.value} = '{effect.value}'" for cls, effect in machine.EFFECTS.items())
_HOLDS = ", ".join(f"{cls.value} = true" for cls in sorted(machine.HOLDS))
_STATES = ", ".join(f"{state.value} = true" for state in sorted(machine.STORED_STATES))

_PRELUDE = f"""
local EFFECTS = {{{_EFFECTS}}}
local HOLDS = {{{_HOLDS}}}
local STATES = {{{_STATES}}}
local MAX_FAILURES = {machine.MAX_FAILURES}
local MAX_RETRY_AFTER = {machine.MAX_RETRY_AFTER!r}
local MAX_WAIT = {machine.MAX_WAIT!r}
local MAX_AHEAD = {machine.MAX_AHEAD!r}
local NUMBER_CHARACTERS = {NUMBER_CHARACTERS}

local function fmt(x) return string.format('%.17g', x) end

-- a number as fmt writes it: decimal digits, sign, point, exponent (no hex, no spaces, no
-- 'nan' or 'inf' spelt out); nil otherwise
local function number(v)
  if not v or #v > NUMBER_CHARACTERS or not string.find(v, '^[-+.%deE]+$') then return nil end
  return tonumber(v)
end

local function clock(shift)
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(shift)
end

local function fresh()
  return {{state = 'available', failures = 0, ends = 0, brk = 0, probe = nil, err = nil}}
end

-- The record under key and how it was found: 'none' (no key), 'ok', or 'bad' (not a record
-- machine.plausible accepts at now, with the caps no config exceeds and never this gateway's
-- own settings; it then reads as absent). nan fails every comparison, so the range tests below
-- also refuse it.
local function load(key, now)
  local v = redis.pcall('HMGET', key, 'state', 'failures', 'until', 'break', 'probe', 'error')
  if v.err then return fresh(), 'bad' end  -- not a hash
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6]) then
    -- no record; but a hash of someone else's fields, kept for ever, is not left there
    if redis.call('TTL', key) == -1 then return fresh(), 'bad' end
    return fresh(), 'none'
  end
  local r = {{state = v[1], failures = number(v[2]), ends = number(v[3]), brk = number(v[4]),
             probe = nil, err = nil}}
  local ok = STATES[r.state] and r.failures and r.failures >= 0
    and r.failures <= MAX_FAILURES and r.failures == math.floor(r.failures)
    and r.ends and r.ends >= 0 and r.ends <= now + MAX_AHEAD
    and r.brk and r.brk >= 0 and r.brk <= MAX_WAIT
  if v[5] and v[5] ~= '' then
    r.probe = number(v[5])
    ok = ok and r.probe and r.probe >= 0 and r.probe <= now + MAX_AHEAD
  end
  if v[6] and v[6] ~= '' then
    r.err = v[6]
    ok = ok and EFFECTS[r.err] ~= nil
  end
  if not ok then return fresh(), 'bad' end
  return r, 'ok'
end

local function encode(r)
  return {{r.state, tostring(r.failures), fmt(r.ends), fmt(r.brk),
          r.probe and fmt(r.probe) or '', r.err or ''}}
end

local function keep(key, r, now)
  local last = math.max(r.ends, r.probe or 0)
  redis.call('EXPIRE', key, math.ceil(math.max(0, last - now)) + {KEEP_SECONDS})
end

-- Write r when it differs from the record as loaded (before); found is what load said.
local function save(key, r, found, before, now)
  if found == 'bad' then redis.call('DEL', key) end
  if table.concat(encode(r), '|') == before then
    -- unchanged; a plausible record someone else wrote without a TTL gets one
    if found == 'ok' and redis.call('TTL', key) == -1 then keep(key, r, now) end
    return
  end
  redis.call('HSET', key, 'state', r.state, 'failures', tostring(r.failures),
             'until', fmt(r.ends), 'break', fmt(r.brk))
  if r.probe then redis.call('HSET', key, 'probe', fmt(r.probe))
  else redis.call('HDEL', key, 'probe') end
  if r.err then redis.call('HSET', key, 'error', r.err)
  else redis.call('HDEL', key, 'error') end
  keep(key, r, now)
end

local function held(err) return err ~= nil and HOLDS[err] == true end

local function effective(r, now)
  if r.state == 'circuit_open' and now >= r.ends then return 'half_open' end
  if r.state == 'rate_limited' and now >= r.ends then return 'available' end
  return r.state
end

local function lease_free(r, now) return r.probe == nil or now >= r.probe end

local function may_probe_early(r, now)
  local s = effective(r, now)
  return (s == 'circuit_open' or s == 'rate_limited') and not held(r.err) and lease_free(r, now)
end

local function settle(r, now)
  if r.state == 'rate_limited' and now >= r.ends then
    r.state = 'available'; r.ends = 0; r.probe = nil
  end
end
"""

READ = (
    _PRELUDE
    + """
local out = {fmt(clock(ARGV[1]))}
local blank = {'available', '0', '0', '0', '', ''}
for _, key in ipairs(KEYS) do
  -- the stored strings as they are (save wrote them with fmt): Python checks and parses them
  local v = redis.pcall('HMGET', key, 'state', 'failures', 'until', 'break', 'probe', 'error')
  if v.err then
    for i = 1, 6 do out[#out + 1] = '!' end  -- not a hash: no field reads
  elseif not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6]) then
    for i = 1, 6 do out[#out + 1] = blank[i] end
  else
    for i = 1, 6 do
      local x = v[i] or ''
      if #x > NUMBER_CHARACTERS or string.find(x, ' ', 1, true) then x = '!' end
      out[#out + 1] = x
    end
  end
end
return table.concat(out, ' ')
"""
)
"""KEYS: the deployments' hashes; ARGV: shift. Answers ``now``, then each record's fields as
stored (a missing field of a hash that exists as ``''``; an unframeable value as ``!``)."""

ADMIT = (
    _PRELUDE
    + """
if redis.replicate_commands then redis.replicate_commands() end
local now = clock(ARGV[1])
local lease_seconds, early = tonumber(ARGV[2]), ARGV[3] == '1'
local r, found = load(KEYS[1], now)
local before = table.concat(encode(r), '|')
settle(r, now)
local s = effective(r, now)
local admitted, lease = '0', ''
if s == 'available' then
  admitted = '1'
elseif (s == 'half_open' and lease_free(r, now)) or (early and may_probe_early(r, now)) then
  r.probe = now + lease_seconds
  admitted, lease = '1', fmt(r.probe)
end
save(KEYS[1], r, found, before, now)
local out = {fmt(now), admitted, lease, found == 'bad' and '1' or '0'}
for _, field in ipairs(encode(r)) do out[#out + 1] = field end
return table.concat(out, ' ')
"""
)
"""KEYS: the hash; ARGV: shift, probe lease seconds, early ('1'/'0'). Answers ``now``, admitted
('1'/'0'), the lease ('' when not a probe), reset ('1' when the stored record was not plausible),
the record's fields."""

REPORT = (
    _PRELUDE
    + """
if redis.replicate_commands then redis.replicate_commands() end
local now = clock(ARGV[1])
local err = ARGV[2] ~= '' and ARGV[2] or nil
local retry_after = tonumber(ARGV[3])
local cancelled = ARGV[4] == '1'
local lease = tonumber(ARGV[5])
local threshold, recovery = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_recovery, cooldown = tonumber(ARGV[8]), tonumber(ARGV[9])

local function note(r, e)
  -- a hold is not overwritten by a lesser class while the deployment still waits
  if r.state ~= 'available' and held(r.err) and not held(e) then return r.err end
  return e
end

local function open(r, grow)
  local seconds
  if r.brk <= 0 then seconds = recovery
  elseif grow then seconds = math.min(r.brk * 2, max_recovery)
  else seconds = r.brk end
  local ends = now + seconds
  if r.state == 'rate_limited' then ends = math.max(ends, r.ends) end
  r.state = 'circuit_open'; r.ends = ends; r.brk = seconds
end

local function cool(r, e, seconds, probe)
  if r.state == 'circuit_open' and not probe then
    if held(e) then r.ends = math.max(r.ends, now + seconds); r.err = e end
    return
  end
  local ends = now + seconds
  if r.state == 'rate_limited' and not probe then ends = math.max(ends, r.ends) end
  r.err = probe and e or note(r, e)
  r.state = 'rate_limited'; r.ends = ends
end

local function succeed(r, probe)
  if r.state == 'rate_limited' and not probe then
    r.failures = 0; r.brk = 0
    return
  end
  r.state = 'available'; r.failures = 0; r.ends = 0; r.brk = 0; r.probe = nil
end

local function fail(r, e, probe)
  local effect = EFFECTS[e]
  if effect == 'none' then return end
  if effect == 'cooldown' then
    local seconds = cooldown
    if retry_after ~= nil then seconds = math.min(math.max(0, retry_after), MAX_RETRY_AFTER) end
    cool(r, e, seconds, probe)
    return
  end
  if effect == 'quota' then cool(r, e, recovery, probe); return end
  r.err = probe and e or note(r, e)
  r.failures = math.min(r.failures + 1, MAX_FAILURES)
  if r.state == 'circuit_open' then
    if probe then open(r, true) end
    return
  end
  if effect == 'open' or r.failures >= threshold then open(r, false) end
end

local r, found = load(KEYS[1], now)
local stored = table.concat(encode(r), '|')
local before = effective(r, now)
settle(r, now)
local probe = lease ~= nil and r.probe ~= nil and r.probe == lease
if probe then r.probe = nil end
if cancelled then
elseif err == nil then succeed(r, probe)
else fail(r, err, probe) end
save(KEYS[1], r, found, stored, now)
local out = {fmt(now), before, effective(r, now), found == 'bad' and '1' or '0'}
for _, field in ipairs(encode(r)) do out[#out + 1] = field end
return table.concat(out, ' ')
"""
)
"""KEYS: the hash; ARGV: shift, error class ('' for success), Retry-After ('' for none), cancelled
('1'/'0'), lease ('' for none), threshold, recovery, max recovery, rate-limit cooldown (the
policy's, each length already cut to :data:`machine.MAX_WAIT`). Answers ``now``, the visible
state before and after, reset (as ADMIT's), the record's fields."""

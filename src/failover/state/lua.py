"""The Lua scripts of the Redis health backend: :mod:`failover.health.machine`, line for line.

One hash per deployment holds the machine's flat :class:`~failover.health.machine.BreakerRecord`
(fields ``state failures until break probe error``; a missing hash is the fresh record). Three
scripts read and move it, each atomic in Redis, each one round trip:

- :data:`READ` returns ``now`` and the records of several deployments (``plan`` and ``status``
  run :func:`machine.plan` on them in Python: reading needs no atomicity beyond one snapshot).
- :data:`ADMIT` runs :func:`machine.admit` and writes the record when it changed.
- :data:`REPORT` runs :func:`machine.report` and writes the record when it changed.

Each answer is one string of space-separated fields (none contains a space): one bulk reply
parses several times faster in redis-py than an array of them.

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
deployment idle for a day forgets its consecutive-failure count, nothing more.
"""

from __future__ import annotations

from failover.health import machine

__all__ = ["ADMIT", "READ", "RECORD_FIELDS", "REPORT"]

RECORD_FIELDS = 6
"""Strings per record in a script's answer: state, failures, until, break, probe, error."""

KEEP_SECONDS = 86_400

_EFFECTS = ", ".join(f"{cls.value} = '{effect.value}'" for cls, effect in machine.EFFECTS.items())
_HOLDS = ", ".join(f"{cls.value} = true" for cls in sorted(machine.HOLDS))

_PRELUDE = f"""
local EFFECTS = {{{_EFFECTS}}}
local HOLDS = {{{_HOLDS}}}

local function fmt(x) return string.format('%.17g', x) end

local function clock(shift)
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(shift)
end

local function load(key)
  local v = redis.call('HMGET', key, 'state', 'failures', 'until', 'break', 'probe', 'error')
  return {{
    state = v[1] or 'available',
    failures = tonumber(v[2]) or 0,
    ends = tonumber(v[3]) or 0,
    brk = tonumber(v[4]) or 0,
    probe = tonumber(v[5]),
    err = v[6] or nil,
  }}
end

local function encode(r)
  return {{r.state, tostring(r.failures), fmt(r.ends), fmt(r.brk),
          r.probe and fmt(r.probe) or '', r.err or ''}}
end

local function save(key, r, before, now)
  if table.concat(encode(r), '|') == before then return end
  redis.call('HSET', key, 'state', r.state, 'failures', tostring(r.failures),
             'until', fmt(r.ends), 'break', fmt(r.brk))
  if r.probe then redis.call('HSET', key, 'probe', fmt(r.probe))
  else redis.call('HDEL', key, 'probe') end
  if r.err then redis.call('HSET', key, 'error', r.err)
  else redis.call('HDEL', key, 'error') end
  local last = math.max(r.ends, r.probe or 0)
  redis.call('EXPIRE', key, math.ceil(math.max(0, last - now)) + {KEEP_SECONDS})
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
  -- the stored strings as they are (save wrote them with fmt): no need to parse and format them
  local v = redis.call('HMGET', key, 'state', 'failures', 'until', 'break', 'probe', 'error')
  for i = 1, 6 do out[#out + 1] = v[i] or blank[i] end
end
return table.concat(out, ' ')
"""
)
"""KEYS: the deployments' hashes; ARGV: shift. Answers ``now``, then each record's fields."""

ADMIT = (
    _PRELUDE
    + """
if redis.replicate_commands then redis.replicate_commands() end
local now = clock(ARGV[1])
local lease_seconds, early = tonumber(ARGV[2]), ARGV[3] == '1'
local r = load(KEYS[1])
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
save(KEYS[1], r, before, now)
local out = {fmt(now), admitted, lease}
for _, field in ipairs(encode(r)) do out[#out + 1] = field end
return table.concat(out, ' ')
"""
)
"""KEYS: the hash; ARGV: shift, probe lease seconds, early ('1'/'0').
Answers ``now``, admitted ('1'/'0'), the lease ('' when not a probe), the record's fields."""

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
    cool(r, e, retry_after == nil and cooldown or math.max(0, retry_after), probe)
    return
  end
  if effect == 'quota' then cool(r, e, recovery, probe); return end
  r.err = probe and e or note(r, e)
  r.failures = r.failures + 1
  if r.state == 'circuit_open' then
    if probe then open(r, true) end
    return
  end
  if effect == 'open' or r.failures >= threshold then open(r, false) end
end

local r = load(KEYS[1])
local stored = table.concat(encode(r), '|')
local before = effective(r, now)
settle(r, now)
local probe = lease ~= nil and r.probe ~= nil and r.probe == lease
if probe then r.probe = nil end
if cancelled then
elseif err == nil then succeed(r, probe)
else fail(r, err, probe) end
save(KEYS[1], r, stored, now)
local out = {fmt(now), before, effective(r, now)}
for _, field in ipairs(encode(r)) do out[#out + 1] = field end
return table.concat(out, ' ')
"""
)
"""KEYS: the hash; ARGV: shift, error class ('' for success), Retry-After ('' for none),
cancelled ('1'/'0'), lease ('' for none), threshold, recovery, max recovery, rate-limit cooldown.
Answers ``now``, the visible state before and after, the record's fields."""

"""The Lua scripts that keep the replicas' shared state on Redis: each decision is one atomic script.

Redis runs a script alone, so a check and the charge that follows it cannot interleave with another
replica's: replicas sharing a counter never admit more than one of them would (the bound is the same as a
single gateway's). Time is the caller's scenario time, passed in, so every replica reads one clock and tests
drive it virtually.

A sliding window is `harness.limits.SlidingWindow` written for Redis: a list of buckets "start latest
amount", oldest first, and the units they hold at a second key. A bucket takes the spending of
`granularity` seconds from its first entry and expires with its latest, so the shared window decides exactly
as the in-memory one does.
"""

from __future__ import annotations

_WINDOW = """
local function fmt(x) return string.format('%.17g', x) end

local function bucket(entry)
  local start, latest, amount = string.match(entry, '(%S+) (%S+) (%S+)')
  return tonumber(start), tonumber(latest), tonumber(amount)
end

-- drop the buckets whose latest entry is `seconds` old; the units the window still holds
local function expire(list, total, now, seconds)
  local used = tonumber(redis.call('GET', total) or '0')
  local dropped = false
  while true do
    local head = redis.call('LINDEX', list, 0)
    if not head then
      if dropped then redis.call('DEL', total) end
      return 0  -- empty: no floating-point residue
    end
    local _, latest, amount = bucket(head)
    if latest + seconds > now then
      if dropped then redis.call('SET', total, fmt(used), 'KEEPTTL') end
      return used
    end
    redis.call('LPOP', list)
    used, dropped = used - amount, true
  end
end

local function add(list, total, used, now, granularity, amount, ttl_ms)
  local last = redis.call('LINDEX', list, -1)
  local start, _, held = nil, nil, 0
  if last then start, _, held = bucket(last) end
  if start and now - start < granularity then
    redis.call('LSET', list, -1, fmt(start) .. ' ' .. fmt(now) .. ' ' .. fmt(held + amount))
  else
    redis.call('RPUSH', list, fmt(now) .. ' ' .. fmt(now) .. ' ' .. fmt(amount))
  end
  redis.call('PEXPIRE', list, ttl_ms)
  redis.call('SET', total, fmt(used + amount), 'PX', ttl_ms)
  return used + amount
end

-- give back up to `amount` from the newest spending
local function refund(list, total, used, amount)
  local i = redis.call('LLEN', list) - 1
  while amount > 0 and i >= 0 do
    local start, latest, held = bucket(redis.call('LINDEX', list, i))
    local taken = math.min(held, amount)
    redis.call('LSET', list, i, fmt(start) .. ' ' .. fmt(latest) .. ' ' .. fmt(held - taken))
    used, amount, i = used - taken, amount - taken, i - 1
  end
  redis.call('SET', total, fmt(used), 'KEEPTTL')
  return used
end

-- seconds until `amount` fits (-1: never, it exceeds the limit), and until the window is empty
local function waits(list, used, amount, limit, now, seconds)
  local reset = 0
  local last = redis.call('LINDEX', list, -1)
  if last then
    local _, latest = bucket(last)
    reset = math.max(0, latest + seconds - now)
  end
  if amount > limit then return -1, reset end
  local excess = used + amount - limit
  for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
    local _, latest, held = bucket(entry)
    excess = excess - held
    if excess <= 1e-9 then return math.max(0, latest + seconds - now), reset end
  end
  return seconds, reset
end

-- a calendar quota: a hash of the period's end and the units spent in it; a later period starts from 0.
-- Reading writes nothing: a refused request of an unknown key leaves no key behind.
local function quota_used(key, period_end)
  local stored = redis.call('HMGET', key, 'end', 'used')
  if tonumber(stored[1] or '-1') < period_end then return 0 end
  return tonumber(stored[2])
end

local function quota_set(key, period_end, used, ttl_ms)
  redis.call('HSET', key, 'end', fmt(period_end), 'used', fmt(used))
  redis.call('PEXPIRE', key, ttl_ms)
end
"""

# KEYS: minute buckets, minute total, quota, then the open-until keys of the pool's breakers. ARGV: now, need,
# charge, tpm, seconds, granularity, ttl_ms, quota, quota_end, quota_ttl_ms (tpm or quota 0: not limited).
# Returns status, retry_after (-1: never), reset_after, minute used, quota used, then each breaker's open-until
# ('' when never tripped): the request reads the pool's trips in the same round trip.
TOKEN_ADMIT = (
    _WINDOW
    + """
local trips = {}
for i = 4, #KEYS do trips[#trips + 1] = redis.call('GET', KEYS[i]) or '' end
local function answer(...)
  local out = {...}
  for _, until_ in ipairs(trips) do out[#out + 1] = until_ end
  return out
end
local now, need, charge = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tpm, seconds, granularity, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local quota, quota_end, quota_ttl = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local q_used, used = 0, 0
if quota > 0 then
  q_used = quota_used(KEYS[3], quota_end)
  if q_used + need > quota then
    local retry = quota_end - now
    if need > quota then retry = -1 end
    if tpm > 0 then used = expire(KEYS[1], KEYS[2], now, seconds) end
    return answer('403', fmt(retry), fmt(quota_end - now), fmt(used), fmt(q_used))
  end
end
if tpm > 0 then
  used = expire(KEYS[1], KEYS[2], now, seconds)
  if used + need > tpm then
    local retry, reset = waits(KEYS[1], used, need, tpm, now, seconds)
    return answer('429', fmt(retry), fmt(reset), fmt(used), fmt(q_used))
  end
end
if charge > 0 then
  if tpm > 0 then used = add(KEYS[1], KEYS[2], used, now, granularity, charge, ttl) end
  if quota > 0 then
    q_used = q_used + charge
    quota_set(KEYS[3], quota_end, q_used, quota_ttl)
  end
end
return answer('200', '0', '0', fmt(used), fmt(q_used))
"""
)

# KEYS: minute buckets, minute total, quota. ARGV: now, delta, tpm, seconds, granularity, ttl_ms, quota,
# quota_end, quota_ttl_ms. Charges a positive delta, refunds a negative one from the newest spending.
# Returns the minute's and the quota's units used.
TOKEN_SETTLE = (
    _WINDOW
    + """
local now, delta = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm, seconds, granularity, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local quota, quota_end, quota_ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local used, q_used = 0, 0
if tpm > 0 then
  used = expire(KEYS[1], KEYS[2], now, seconds)
  if delta > 0 then
    used = add(KEYS[1], KEYS[2], used, now, granularity, delta, ttl)
  elseif delta < 0 then
    used = refund(KEYS[1], KEYS[2], used, -delta)
  end
end
if quota > 0 then
  q_used = math.max(0, quota_used(KEYS[3], quota_end) + delta)
  quota_set(KEYS[3], quota_end, q_used, quota_ttl)
end
return {fmt(used), fmt(q_used)}
"""
)

# KEYS: failure buckets, failures, request buckets, requests, open-until. ARGV: now, failed (0/1), count,
# percentage (-1: by count), interval, granularity, ttl_ms, duration, until_ttl_ms. Returns state (open:
# tripped before, tripped: by this outcome, closed), open-until (-1 when closed), failures and requests in
# the interval.
BREAKER_RECORD = (
    _WINDOW
    + """
local now, failed, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local percentage, interval, granularity = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, duration, until_ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local open_until = tonumber(redis.call('GET', KEYS[5]) or '-1')
if open_until > now then return {'open', fmt(open_until), '0', '0'} end
local requests = 0
if percentage >= 0 then
  requests = add(KEYS[3], KEYS[4], expire(KEYS[3], KEYS[4], now, interval), now, granularity, 1, ttl)
end
if failed == 0 then return {'closed', '-1', '0', fmt(requests)} end
local failures = add(KEYS[1], KEYS[2], expire(KEYS[1], KEYS[2], now, interval), now, granularity, 1, ttl)
local tripped
if percentage >= 0 then
  tripped = 100 * failures / math.max(1, requests) >= percentage
else
  tripped = failures >= count
end
if not tripped then return {'closed', '-1', fmt(failures), fmt(requests)} end
redis.call('SET', KEYS[5], fmt(now + duration), 'PX', until_ttl)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {'tripped', fmt(now + duration), fmt(failures), fmt(requests)}
"""
)

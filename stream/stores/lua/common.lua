-- Shared by apply.lua and tick.lua (the store concatenates this file in front of each).
-- Members are "<19-digit ticks>|<ReportId>[|...]" in a ZSET with score 0, so a lexicographic
-- range between two tick strings is the window, exact to the tick. Every key of one call carries
-- the same hash tag (the bucket), so a call touches one Redis Cluster slot.
local req = cjson.decode(ARGV[1])
local as_of = req.as_of
local wall = req.wall
local out = {}

local function first_in(e, lo, hi)
  return redis.call('ZRANGEBYLEX', e, '[' .. lo, '(' .. hi .. '~', 'LIMIT', 0, 1)[1]
end

local function last_in(e, lo, hi)
  return redis.call('ZREVRANGEBYLEX', e, '(' .. hi .. '~', '[' .. lo, 'LIMIT', 0, 1)[1]
end

local function alert_id(rid, gk, start)
  local h = redis.sha1hex(rid .. '\n' .. gk .. '\n' .. start)
  return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' .. string.sub(h, 13, 16)
    .. '-' .. string.sub(h, 17, 20) .. '-' .. string.sub(h, 21, 32)
end

local function emit(r, kind, gk, id, seq, start, ev)
  local d = cjson.encode({k = kind, id = id, seq = seq, rid = r.rid, gk = gk, as_of = as_of,
    start = start, ev = ev or cjson.null, wall = wall})
  redis.call('HSET', r.kp .. 'ob', id .. ':' .. seq, d)
  out[#out + 1] = d
end

-- Decide for one group after its members changed (or its future timer fired).
local function evaluate(r, gk, e, s, changed)
  local st = redis.call('HMGET', s, 'last', 'pend', 'ev')
  local last, pend = st[1], st[2]
  local was_open = last and last >= r.lo
  local cur = last_in(e, r.lo, r.hi)
  if not cur then
    return
  end
  local cur_t = string.sub(cur, 1, 19)
  if not was_open then
    local start = string.sub(first_in(e, r.lo, r.hi), 1, 19)
    local id = alert_id(r.rid, gk, start)
    redis.call('HSET', s, 'id', id, 'seq', 0, 'start', start, 'pend', 0, 'last', cur_t)
    redis.call('ZREM', r.kp .. 'due', gk)
    emit(r, 'new', gk, id, 0, start, st[3])
  else
    if changed and (not pend or pend == '0') then
      redis.call('HSET', s, 'pend', wall)
      redis.call('ZADD', r.kp .. 'due', wall + r.upd_ms, gk)
    end
    redis.call('HSET', s, 'last', cur_t)
  end
end

-- Arm the timer that re-evaluates a group when its earliest future-dated member comes in range.
local function schedule_future(r, gk, e)
  local nxt = redis.call('ZRANGEBYLEX', e, '(' .. r.hi .. '~', '+', 'LIMIT', 0, 1)[1]
  if nxt then
    redis.call('ZADD', r.kp .. 'fut', tonumber(string.sub(nxt, 1, 19)) / 1e7 - r.skew_s, gk)
  end
end

local function expire(r, e, s, p)
  local newest = redis.call('ZRANGE', e, -1, -1)[1]
  if not newest then
    redis.call('DEL', e, s, p)
    return
  end
  -- TTL against as_of, not the wall clock: a replay of old data with an old as_of keeps state.
  local ttl = math.floor((tonumber(string.sub(newest, 1, 19)) - tonumber(as_of)) / 1e4
    + r.L_ms + r.margin_ms)
  if ttl < 1000 then
    ttl = 1000
  end
  redis.call('PEXPIRE', e, ttl)
  redis.call('PEXPIRE', s, ttl)
  if redis.call('EXISTS', p) == 1 then
    redis.call('PEXPIRE', p, ttl)
  end
end

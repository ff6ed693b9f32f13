-- tick: for one bucket and every rule, re-evaluate groups whose future-dated members came in
-- range, and fire `update` for pending changes that are due (wall clock). Returns the decisions.
for _, r in ipairs(req.rules) do
  -- Scores are seconds as doubles (about 8 us resolution): look 1 ms ahead and let evaluate()
  -- decide exactly; a timer that fired early is armed again by schedule_future().
  local fut = redis.call('ZRANGEBYSCORE', r.kp .. 'fut', '-inf', r.now_s + 0.001, 'LIMIT', 0, 1000)
  for _, gk in ipairs(fut) do
    redis.call('ZREM', r.kp .. 'fut', gk)
    local e = r.kp .. 'e:' .. gk
    evaluate(r, gk, e, r.kp .. 's:' .. gk, true)
    schedule_future(r, gk, e)
  end
  local due = redis.call('ZRANGEBYSCORE', r.kp .. 'due', '-inf', req.due, 'LIMIT', 0, 1000)
  for _, gk in ipairs(due) do
    redis.call('ZREM', r.kp .. 'due', gk)
    local e = r.kp .. 'e:' .. gk
    local s = r.kp .. 's:' .. gk
    local st = redis.call('HMGET', s, 'id', 'seq', 'start', 'ev')
    if st[1] then
      redis.call('HSET', s, 'pend', 0)
      local cur = last_in(e, r.lo, r.hi)
      if cur then
        local seq = tonumber(st[2]) + 1
        redis.call('HSET', s, 'seq', seq, 'last', string.sub(cur, 1, 19))
        emit(r, 'update', gk, st[1], seq, st[3], st[4])
      end
    end
  end
end
return out

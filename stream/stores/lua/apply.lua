-- apply: add one bucket's members for every rule, decide `new` alerts and pending changes, and
-- record the decisions in the bucket's outbox, all in one atomic step. Returns the decisions.
for _, r in ipairs(req.rules) do
  for _, g in ipairs(r.groups) do
    local e = r.kp .. 'e:' .. g.gk
    local s = r.kp .. 's:' .. g.gk
    local p = r.kp .. 'p:' .. g.gk
    local pl = g.p
    local has_pl = pl ~= nil and pl ~= cjson.null
    if has_pl then
      local old = redis.call('ZRANGEBYLEX', e, '-', '(' .. r.lo)
      for i = 1, #old do
        redis.call('HDEL', p, old[i])
      end
    end
    redis.call('ZREMRANGEBYLEX', e, '-', '(' .. r.lo)
    local added_in, added_f = 0, 0
    local nm = #g.m
    for i = 1, nm do
      if redis.call('ZADD', e, 0, g.m[i]) == 1 then
        added_in = added_in + 1
        if has_pl then
          redis.call('HSETNX', p, g.m[i], pl[i])
        end
      end
    end
    for i = 1, #g.f do
      if redis.call('ZADD', e, 0, g.f[i]) == 1 then
        added_f = added_f + 1
        if has_pl then
          redis.call('HSETNX', p, g.f[i], pl[nm + i])
        end
      end
    end
    if added_in + added_f > 0 and g.ev ~= cjson.null then
      local evt = redis.call('HGET', s, 'evt')
      if not evt or g.evt > evt then
        redis.call('HSET', s, 'ev', g.ev, 'evt', g.evt)
      end
    end
    evaluate(r, g.gk, e, s, added_in > 0)
    if added_f > 0 then
      schedule_future(r, g.gk, e)
    end
    expire(r, e, s, p)
  end
end
return out

-- Shared by every script: each .lua file is loaded with this one in front of it (see
-- scripts.py: one function library, or a script per file where the server has no functions).
-- KEYS[1] is the namespace prefix, e.g. "{conveyor}:". Every key a script touches starts with
-- it, so all of them carry one hash tag and live in one Redis Cluster slot.
-- PUBLISH, set in front of this file by connection.py, is 'PUBLISH' on one server and
-- 'SPUBLISH' on a Cluster: the channels carry the hash tag too, so a sharded message stays in
-- the shard that owns the namespace.
--
-- Every Redis command costs server time on each job that passes through it, so the indexes
-- are the fewest that claim, finish, sweep, list_jobs and queue_counts need: the work
-- indexes (ready, sched, running, purge, expiring), a lexical `state:<s>` index only for the
-- states no successful job passes through, and the lexical `bytask:<task>` and
-- `byqueue:<queue>`, written once per job (enqueue and purge). No index holds every job:
-- the job's hash tells a retried enqueue, and list.lua merges the `byqueue` indexes.
--
-- Everything below is made once, when the library is loaded; a call starts with begin(),
-- which gives it the prefix P, its arguments ARGV and fresh per-call state. The state's
-- meaning is told where it is used.
local P, ARGV, time_reply
local changed, woken, events, deltas, stat_n, stat_sum = {}, {}, {}, {}, {}, {}
local queues_seen, new_ready, new_listed, limit_specs, limit_uses = {}, {}, {}, {}, {}
local ends, numbers = {}, {}
local nevents = 0 -- events' length (see event())
-- A table the last call left empty serves again: most calls fill few of them, and a new
-- table costs an allocation and the collector's time.
-- Globals the hot paths use, read once: in a library every read of a global goes through the
-- sandbox's lookup (some 700 server instructions each, measured), and a library keeps these
-- between calls (not read at load, where the sandbox hides them; a script reads them on each
-- call, as it runs this file each time).
local rcall, nxt, fmt, strsub, unpk
local tonumber_, ipairs_, pairs_, floor_, min_, mp_unpack, json_encode, concat
-- A new table with room for 64 values in its array part, for the lists a call fills one value
-- at a time: from empty, a table is made anew at 1, 2, 4, 8... values, some 500 server
-- instructions each time (measured).
local function room64()
  return {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
    nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
    nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
    nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
end
-- (Written out, not a function per table: a Lua call costs more than the test, on every call.)
local function begin(keys, args)
  if not rcall then
    rcall, nxt, fmt, strsub, unpk = redis.call, next, string.format, string.sub, unpack
    tonumber_, ipairs_, pairs_, floor_, min_ = tonumber, ipairs, pairs, math.floor, math.min
    mp_unpack, json_encode, concat = cmsgpack.unpack, cjson.encode, table.concat
  end
  P, ARGV, time_reply = keys[1], args, nil
  if nxt(changed) then changed = room64() end
  if nxt(woken) then woken = {} end
  if nxt(events) then events = room64(); nevents = 0 end
  if nxt(deltas) then deltas = {} end
  if nxt(stat_n) then stat_n = {} end
  if nxt(stat_sum) then stat_sum = {} end
  if nxt(queues_seen) then queues_seen = {} end
  if nxt(new_ready) then new_ready = {} end
  if nxt(new_listed) then new_listed = {} end
  if nxt(limit_specs) then limit_specs = {} end
  if nxt(limit_uses) then limit_uses = {} end
  if nxt(ends) then ends = {} end
  if nxt(numbers) then numbers = {} end
end
local WAITING = {scheduled = true, queued = true}
local ACTIVE = {scheduled = true, queued = true, running = true}
local FINAL = {succeeded = true, failed = true, cancelled = true, expired = true}
local LISTED = {scheduled = true, failed = true, cancelled = true, expired = true}
-- A record as enqueue sends it: one msgpack array, the number n of fields that follow, then
-- the first n fields in this order (codec.py FIELDS), nil for an unset one (a result_ttl of
-- 86400, the default, is not stored either). A new job sets none past the first 13, so it
-- sends only those.
local FIELDS = {'id', 'task', 'payload', 'queue', 'state', 'created_at', 'ready_at',
  'result_ttl', 'priority', 'expires_at', 'key', 'unique_key', 'meta', 'attempts', 'failures',
  'crashes', 'started_at', 'finished_at', 'purge_at', 'result', 'error', 'progress', 'worker',
  'token', 'lease_expires_at', 'cancel_requested'}
-- 2^42 ms is the year 2109: priority bands never overlap and ready_at keeps 1/16 ms.
local BAND = 4398046511104

-- changed: ids of jobs that changed, published once at the end
-- Workflow hooks, filled in by workflow.lua (loaded after this file): final(id, to, now,
-- result, err, meta) when a job whose meta has a flow became final; purged(id, meta).
local flow = {}
-- woken: queues where a job became queued or scheduled: their waiters look again

-- Lua prints numbers with 14 digits; %.17g gives back the exact double.
local function num(x) return fmt('%.17g', x) end
-- A time's text parsed once per call (numbers: its text -> its value): a number of 17
-- digits costs the server some 2,000 instructions to parse, and a call meets the same few
-- times again and again (the caller's now, a batch's start times, the lease it stamps).
local function tonum(s)
  local v = numbers[s]
  if v == nil then v = tonumber_(s); numbers[s] = v end
  return v
end
-- num(x) for a time the call parses again later (its stamps): noted, so it is not parsed
local function num_noted(x)
  local s = fmt('%.17g', x)
  numbers[s] = x
  return s
end
-- A whole number as redis.call needs it: a Lua number would be printed with '%.17g', which
-- costs the server several times more. string.format itself costs some 2,900 instructions a
-- call (measured), a table read a few dozen: the small numbers a call counts with (a batch's
-- size, a count's change) are kept, made once each, in the library.
local int_texts = {}
local function int(x)
  local s = int_texts[x]
  if s then return s end
  s = fmt('%d', x)
  if x > -1024 and x < 1024 then int_texts[x] = s end
  return s
end
-- The digits' texts, for tokens made from the one before (claim_jobs)
local DIGITS = {[0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}
-- A job's score in `running`: its lease's expiry rounded down to the second. A sorted set of
-- up to 128 members is a listpack, which compares scores by parsing them back with strtod
-- unless they are whole numbers; `running` is that small on most servers and takes a ZADD
-- per claim. recover.lua reads the exact expiry from the job.
-- The last score made is kept by the library: the calls of one second share it.
local last_second, last_score = nil, nil
local function lease_score(lease)
  local second = floor_(tonum(lease))
  if second ~= last_second then last_second, last_score = second, fmt('%d', second) end
  return last_score
end
-- The server's TIME, read once per call: the leases a script stamps and its change-feed
-- entry share it.
local function server_time()
  if not time_reply then time_reply = rcall('TIME') end
  return time_reply
end
local function jkey(id) return P .. 'job:' .. id end
-- A field that is set: '' stands for none in the fields the hot paths clear (worker,
-- lease_expires_at, error, cancel_requested), which saves them an HDEL.
local function has(v) return v and v ~= '' end

-- Commands with many members, in slices that stay within Lua's stack.
local function zadd_many(key, flat)
  for i = 1, #flat, 1000 do
    rcall('ZADD', key, unpk(flat, i, min_(i + 999, #flat)))
  end
end
local function zrem_many(key, ids)
  for i = 1, #ids, 1000 do
    rcall('ZREM', key, unpk(ids, i, min_(i + 999, #ids)))
  end
end

-- The change feed (app.events, SSE): every change of a job adds an event here, flat: id,
-- task ('' when unknown: read here), state, progress JSON ('' for none). notify() writes
-- them all as one entry of the capped stream `events` (one XADD per script), its id
-- <last event id>-0 from the counter `event_id`: the entry holds the events up to that id.
-- (Its length is kept in nevents: `#events` would search the table for it each time.)
local function event(id, task, state, progress)
  local n = nevents
  events[n + 1] = id
  events[n + 2] = task or redis.call('HGET', jkey(id), 'task') or ''
  events[n + 3] = state
  events[n + 4] = progress or ''
  nevents = n + 4
end

-- Per-task counters for /metrics (app.stats) in the hash `stats`: fields task SEP kind SEP
-- label, kind 'succeeded' or 'failed' with label the run-time bucket (BUCKETS, set in front
-- of this file by connection.py), 'retries', 'error' with label the error type, or 'sum'
-- (a float). Added up here and written by notify(): one HINCRBY per distinct field.
local SEP = '\31'
local function stat(field, n) stat_n[field] = (stat_n[field] or 0) + n end
local NBUCKETS = #BUCKETS
local function bucket(seconds)
  for i = 1, NBUCKETS do
    if seconds <= BUCKETS[i] then return BUCKET_LABELS[i] end
  end
  return '+Inf'
end
-- An attempt ended (from running): count its run time and outcome. The ends, the most
-- frequent stat, add up by task, outcome and label (ends: declared at the top, fresh for
-- each call), their field names made once each, at notify(). `n` attempts alike: the same
-- task, outcome, error and start (finish_jobs counts a run's jobs together).
local function count_end(task, to, started_at, now, err, n)
  if to ~= 'succeeded' and to ~= 'failed' then return end
  local d = 0
  if has(started_at) then d = now - tonum(started_at) end
  local by_task = ends[task]
  if not by_task then by_task = {}; ends[task] = by_task end
  local by_label = by_task[to]
  if not by_label then by_label = {}; by_task[to] = by_label end
  local label = bucket(d)
  by_label[label] = (by_label[label] or 0) + n
  local sum = stat_sum[task] or 0
  for _ = 1, n do sum = sum + d end -- one at a time, as one job at a time would
  stat_sum[task] = sum
  if to == 'failed' then
    local kind = 'Error'
    if has(err) then
      local ok, e = pcall(cjson.decode, err)
      if ok and type(e) == 'table' and type(e.type) == 'string' then kind = e.type end
    end
    stat(task .. SEP .. 'error' .. SEP .. kind, n)
  end
end

-- Count changes add up here, by state and queue (no field name made per change), and are
-- written once, by notify(): batches touch few fields.
local function count(queue, state, delta)
  local by_queue = deltas[state]
  if not by_queue then by_queue = {}; deltas[state] = by_queue end
  by_queue[queue] = (by_queue[queue] or 0) + delta
end

-- Priority descending, then ready_at; equal scores fall back to the id, which sorts by time.
-- ready_at in ms is read from its text with the exponent moved: its exact value times 1000,
-- rounded once, as ZADD reads the score '<ready_at>e3' that enqueue's fast path sends rather
-- than a number formatted by the client (codec.py ready_score is the same).
local function ready_score(priority, ready_at)
  local t = ready_at or '0'
  local ms = tonumber(t .. 'e3') or tonumber(t) * 1000 -- an exponent already, inf or nan
  return num(-tonumber(priority or '0') * BAND + ms)
end

-- The store's time for what the store stamps (leases, the heartbeat record): the server's
-- clock when the caller sent '' (read when the script runs, however late that is), else the
-- caller's value (a test's movable clock, read again by every retry of the call).
local function store_time(arg)
  if arg ~= '' then return tonumber_(arg) end
  local t = server_time()
  return tonumber_(t[1]) + tonumber_(t[2]) / 1000000
end

-- The store-wide heartbeat record (base.py note_heartbeat / in_stall): heartbeats further
-- apart than STALL_SHARE of the lease mean a stall; recover counts no crashes during one and
-- for STALL_GRACE_LEASES lease lengths after it.
local STALL_SHARE, STALL_GRACE_LEASES = 0.5, 2.0
local function in_stall(t)
  local b = redis.call('HMGET', P .. 'beats', 'quiet_after', 'stall_until')
  return (b[1] and t > tonumber(b[1])) or (b[2] and t < tonumber(b[2])) or false
end

-- Take a job out of the indexes of its state (`expiring` is cleaned by sweep, lazily).
local function unplace(id, state, queue)
  if state == 'queued' then redis.call('ZREM', P .. 'ready:' .. queue, id)
  elseif state == 'scheduled' then redis.call('ZREM', P .. 'sched:' .. queue, id)
  elseif state == 'running' then redis.call('ZREM', P .. 'running', id)
  else redis.call('ZREM', P .. 'purge', id) end
  if LISTED[state] then redis.call('ZREM', P .. 'state:' .. state, id) end
  count(queue, state, -1)
end

-- Put a job into the indexes of its state. f: its priority, ready_at, lease_expires_at,
-- purge_at and expires_at when the caller has them, else they are read.
local function place(id, state, queue, f)
  if not f then
    f = redis.call('HMGET', jkey(id), 'priority', 'ready_at', 'lease_expires_at', 'purge_at',
      'expires_at')
    changed[#changed + 1] = id -- an existing job: someone may wait on it
  end
  if state == 'queued' then
    redis.call('ZADD', P .. 'ready:' .. queue, ready_score(f[1], f[2]), id)
    woken[queue] = true
  elseif state == 'scheduled' then
    redis.call('ZADD', P .. 'sched:' .. queue, f[2] or '0', id)
    -- sweep promotes the scheduled jobs of every queue named here
    if not queues_seen[queue] then
      queues_seen[queue] = true
      redis.call('SADD', P .. 'queues', queue)
    end
    woken[queue] = true
  elseif state == 'running' then
    if has(f[3]) then redis.call('ZADD', P .. 'running', lease_score(f[3]), id) end
  elseif has(f[4]) then
    redis.call('ZADD', P .. 'purge', f[4], id)
  end
  if WAITING[state] and has(f[5]) then redis.call('ZADD', P .. 'expiring', f[5], id) end
  if LISTED[state] then redis.call('ZADD', P .. 'state:' .. state, 0, id) end
  count(queue, state, 1)
end

local function move(id, queue, from, to, sets, dels)
  local k = jkey(id)
  unplace(id, from, queue)
  sets[#sets + 1] = 'state'
  sets[#sets + 1] = to
  redis.call('HSET', k, unpack(sets))
  if dels and #dels > 0 then redis.call('HDEL', k, unpack(dels)) end
  place(id, to, queue)
  event(id, nil, to)
end

local function free_unique(id, unique_key)
  if unique_key and redis.call('HGET', P .. 'unique', unique_key) == id then
    redis.call('HDEL', P .. 'unique', unique_key)
  end
end

-- A final outcome: result and error as given (nil clears them), finished and purge times;
-- a workflow job's successors are decided unless `quiet` (workflow.lua decides them itself).
local function finalize(id, queue, from, to, now, result, err, quiet)
  local f = redis.call('HMGET', jkey(id), 'result_ttl', 'unique_key', 'meta', 'task',
    'started_at')
  if from == 'running' then count_end(f[4], to, f[5], now, err, 1) end
  local sets = {'finished_at', num(now), 'purge_at', num(now + tonumber(f[1] or '86400'))}
  local dels = {'worker', 'lease_expires_at', 'cancel_requested'}
  if result then sets[#sets + 1] = 'result'; sets[#sets + 1] = result
  else dels[#dels + 1] = 'result' end
  if err then sets[#sets + 1] = 'error'; sets[#sets + 1] = err
  else dels[#dels + 1] = 'error' end
  move(id, queue, from, to, sets, dels)
  free_unique(id, f[2])
  if not quiet and f[3] and string.find(f[3], '"flow"', 1, true) then
    flow.final(id, to, now, result, err, f[3])
  end
end

local function delete_job(id)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'state', 'queue', 'key', 'unique_key', 'expires_at', 'meta',
    'task')
  if not f[1] then return false end
  redis.call('ZREM', P .. 'bytask:' .. (f[7] or ''), id)
  redis.call('ZREM', P .. 'byqueue:' .. f[2], id)
  if f[6] and string.find(f[6], '"workflow"', 1, true) then flow.purged(id, f[6]) end
  unplace(id, f[1], f[2])
  if has(f[5]) then redis.call('ZREM', P .. 'expiring', id) end
  if f[3] and redis.call('HGET', P .. 'keys', f[3]) == id then
    redis.call('HDEL', P .. 'keys', f[3])
  end
  free_unique(id, f[4])
  redis.call('DEL', k)
  changed[#changed + 1] = id
  return true
end

-- New queued jobs join their ready set in one ZADD per queue, at notify().
-- New jobs join the listing indexes `bytask:<task>` and `byqueue:<queue>` (lexical, for
-- list.lua), in one ZADD per task and per queue, at notify().
local function listed(key, id)
  local batch = new_listed[key]
  if not batch then batch = {}; new_listed[key] = batch end
  batch[#batch + 1] = '0'
  batch[#batch + 1] = id
end

-- The keys that the one-job enqueue names for a queue and a task, made once per namespace and name
-- and kept by the library between calls: a concatenation makes and hashes a new string on
-- every call. Per queue: ready set, byqueue index, counts, its counts field. Each cache is
-- emptied past 1000 names ([0] counts them: no name is a number).
local queue_keys, task_keys = {}, {}
local function enqueue_keys(queue, task)
  local by_queue, by_task = queue_keys[P], task_keys[P]
  if not by_queue then
    by_queue, by_task = {[0] = 0}, {[0] = 0}
    queue_keys[P], task_keys[P] = by_queue, by_task
  end
  local qk, tk = by_queue[queue], by_task[task]
  if not qk then
    if by_queue[0] >= 1000 then by_queue = {[0] = 0}; queue_keys[P] = by_queue end
    qk = {P .. 'ready:' .. queue, P .. 'byqueue:' .. queue, P .. 'counts', 'queued|' .. queue}
    by_queue[queue], by_queue[0] = qk, by_queue[0] + 1
  end
  if not tk then
    if by_task[0] >= 1000 then by_task = {[0] = 0}; task_keys[P] = by_task end
    tk = P .. 'bytask:' .. task
    by_task[task], by_task[0] = tk, by_task[0] + 1
  end
  return qk, tk
end

-- Store a new job unless its key, or its unique key while active, is held. Returns the id of
-- the job that stands for it and whether that job is the new one.
local function store(rec)
  -- rec[1] is the count; field i of FIELDS is rec[i + 1]
  local id, queue, state, key, unique_key = rec[2], rec[5], rec[6], rec[12], rec[13]
  if key then
    local other = rcall('HGET', P .. 'keys', key)
    if other and rcall('EXISTS', jkey(other)) == 1 then return other, false end
  end
  if unique_key then
    local other = rcall('HGET', P .. 'unique', unique_key)
    if other and ACTIVE[rcall('HGET', jkey(other), 'state')] then return other, false end
  end
  -- stored already: a call retried after its reply was lost
  if rcall('EXISTS', jkey(id)) == 1 then return id, false end
  event(id, rec[3], state)
  listed(P .. 'bytask:' .. rec[3], id)
  listed(P .. 'byqueue:' .. queue, id)
  local flat = {}
  for i = 1, rec[1] do
    local value = rec[i + 1]
    if value then
      flat[#flat + 1] = FIELDS[i]
      flat[#flat + 1] = value
    end
  end
  rcall('HSET', jkey(id), unpk(flat))
  if key then rcall('HSET', P .. 'keys', key, id) end
  if unique_key and ACTIVE[state] then rcall('HSET', P .. 'unique', unique_key, id) end
  if state == 'queued' then
    local batch = new_ready[queue]
    if not batch then batch = {}; new_ready[queue] = batch end
    batch[#batch + 1] = ready_score(rec[10], rec[8])
    batch[#batch + 1] = id
    if has(rec[11]) then rcall('ZADD', P .. 'expiring', rec[11], id) end
    woken[queue] = true -- and counted at notify()
  else
    place(id, state, queue, {rec[10], rec[8], rec[26], rec[20], rec[11]})
  end
  return id, true
end

-- LIMITING: limiting.lua is put here by scripts.py (claims and finishes call it).

-- Claim up to `limit` ready jobs of `queues` for `worker`: ready by the caller's `now_s`,
-- stamped `started_s` and `lease` (the store's time, see store_time). Returns, flat, per
-- claimed job: id, queue, token, task, payload, attempts (counted, an integer), created_at,
-- ready_at, then its rare fields (see rare): runs.py decodes them by position, and fills in
-- what the claim itself set.
-- The fields every job has: id, task, payload, queue, state, created_at and ready_at (store()
-- and enqueue.lua's one-job form write them all; a job that has no more is a new one).
local BASE_FIELDS = 7
-- A claim reads a job's CLAIMED fields, in this order: task, payload, priority, key,
-- unique_key, attempts, failures, crashes, created_at, ready_at, expires_at, result_ttl,
-- error, progress, meta. It reads the job's number of fields (HLEN) first: a job with
-- BASE_FIELDS has none of the rare ones (nor attempts, which a claim sets), and only its
-- task, payload, created_at and ready_at are read. In a hash this small (a listpack) each
-- field named costs a scan from its start, the whole of it for a field the job has not set,
-- and each value read its way into a Lua table: some 2,700 server instructions a field,
-- measured, where HLEN costs less than one. Any other job has all fifteen read at once.
-- Returns the fields and whether the job is new; a new job's are only its four, in the
-- order read (task, payload, created_at, ready_at), as no more are needed.
local function claimed_fields(k)
  if rcall('HLEN', k) == BASE_FIELDS then
    return rcall('HMGET', k, 'task', 'payload', 'created_at', 'ready_at'), true
  end
  return rcall('HMGET', k, 'task', 'payload', 'priority', 'key', 'unique_key', 'attempts',
    'failures', 'crashes', 'created_at', 'ready_at', 'expires_at', 'result_ttl', 'error',
    'progress', 'meta'), false
end
-- The CLAIMED fields most jobs leave unset, or false when all are: priority, key,
-- unique_key, failures, crashes, expires_at, result_ttl, error ('' for none), progress, meta
-- (whole numbers as integers, which the client reads without parsing).
local function rare(f)
  if not (f[3] or f[4] or f[5] or f[7] or f[8] or f[11] or f[12] or f[14] or f[15]
    or has(f[13])) then
    return false
  end
  return {tonumber(f[3] or '0'), f[4], f[5], tonumber(f[7] or '0'), tonumber(f[8] or '0'),
    f[11], f[12], f[13], f[14], f[15]}
end
-- (`limit_s`: the limit as the caller sent it, text: a Lua number handed to redis.call is
-- printed with '%.17g', which costs the server some 2,000 instructions.)
local function claim_jobs(worker, limit_s, now_s, started_s, lease, queues)
  local limit = tonumber_(limit_s)
  local now = tonum(now_s)
  local lt = tonum(started_s) -- limits count by the store's time, as leases do
  -- Scheduled jobs whose time came join their queue first, so one order covers both.
  -- Parked jobs whose limit may let them go join theirs too. One EXISTS tells whether there
  -- is either: most claims find neither, and skip a read per queue.
  local waiting = {}
  for i, q in ipairs_(queues) do waiting[i] = P .. 'sched:' .. q end
  waiting[#waiting + 1] = P .. 'limit_wake'
  if rcall('EXISTS', unpk(waiting)) > 0 then
    for i, q in ipairs(queues) do
      local due = rcall('ZRANGEBYSCORE', waiting[i], '-inf', now_s, 'LIMIT', '0', '1000')
      for _, id in ipairs(due) do move(id, q, 'scheduled', 'queued', {}, nil) end
    end
    limit_unpark_due(lt, started_s)
  end

  -- Each queue's head is read a window at a time (one ZRANGE for a whole batch), and the
  -- windows are merged: the lowest score wins, then the lowest id. Nothing is removed until
  -- the end, so the offsets stay valid. One queue needs no merging, so no scores: the server
  -- would print each with '%.17g' and the claim parse it back. Nor do many queues of which
  -- one has ready jobs (a worker's usual lot: `default` and `executor`, one of them busy):
  -- the first windows are read without scores, and read again with them only when two or
  -- more hold jobs (stride 2: id, score). Nothing joins a ready set while a claim runs, so a
  -- queue found empty stays so. The first window is read by score (all of them: the same
  -- order), which takes the limit as sent; a later one by rank, which finds its offset
  -- without walking to it.
  local win, pos, offset, more = {}, {}, {}, {}
  local nq = #queues
  local stride = 1
  local function fill(qi)
    local key, first = P .. 'ready:' .. queues[qi], offset[qi]
    local r
    if first == 0 then
      if stride == 2 then
        r = rcall('ZRANGEBYSCORE', key, '-inf', '+inf', 'WITHSCORES', 'LIMIT', '0', limit_s)
      else r = rcall('ZRANGEBYSCORE', key, '-inf', '+inf', 'LIMIT', '0', limit_s) end
    else
      local last = int(first + limit - 1)
      if stride == 2 then r = rcall('ZRANGE', key, int(first), last, 'WITHSCORES')
      else r = rcall('ZRANGE', key, int(first), last) end
    end
    win[qi], pos[qi] = r, 1
    offset[qi] = first + #r / stride
    more[qi] = #r == stride * limit
  end
  for qi = 1, nq do offset[qi] = 0; fill(qi) end
  local only, busy = 1, 0 -- the queue that holds jobs, when one does
  for qi = 1, nq do
    if win[qi][1] then only = qi; busy = busy + 1 end
  end
  if busy > 1 then
    stride = 2
    for qi = 1, nq do
      if win[qi][1] then offset[qi] = 0; fill(qi) end
    end
  end

  -- taken: per job to claim {id, queue number, fields, limit refs, key, new} (ntaken of them)
  local taken, ntaken, scanned, parked, nparked = {}, 0, 0, {}, 0
  while ntaken < limit and scanned < 10000 and nparked < LIMIT_PARK do
    local best, best_score, best_id = nil, nil, nil
    if stride == 1 then
      if pos[only] > #win[only] and more[only] then fill(only) end
      best_id = win[only][pos[only]]
      if best_id then best = only end
    else
      for qi = 1, nq do
        if pos[qi] > #win[qi] and more[qi] then fill(qi) end
        local p = pos[qi]
        local id = win[qi][p]
        if id then
          local score = tonumber(win[qi][p + 1])
          if not best or score < best_score or (score == best_score and id < best_id) then
            best, best_score, best_id = qi, score, id
          end
        end
      end
    end
    if not best then break end
    pos[best] = pos[best] + stride
    scanned = scanned + 1
    local k = P .. 'job:' .. best_id -- jkey(best_id), written out: once per job read
    local f, new = claimed_fields(k)
    if new then -- no expiry, no limits
      ntaken = ntaken + 1
      taken[ntaken] = {best_id, best, f, false, k, true}
    -- past its expiry: sweep marks it expired; claims pass it by
    elseif not (has(f[11]) and tonumber(f[11]) <= now) then
      -- a job a limit holds back is parked (limiting.lua), the claim goes on behind it
      local refs = limit_refs_of(f[15])
      local blocked = refs and limit_blocking(refs, lt)
      if blocked then
        local score = stride == 2 and win[best][pos[best] - 1]
          or rcall('ZSCORE', P .. 'ready:' .. queues[best], best_id)
        limit_park(best_id, score, blocked, lt)
        local ids = parked[best] or {}
        parked[best] = ids
        ids[#ids + 1] = best_id
        nparked = nparked + 1
      else
        if refs then limit_take(refs, lt, lease) end
        ntaken = ntaken + 1
        taken[ntaken] = {best_id, best, f, refs, k, false}
      end
    end
  end
  for qi, ids in pairs_(parked) do zrem_many(P .. 'ready:' .. queues[qi], ids) end

  local n = ntaken
  local out, no = room64(), 0
  if n == 0 then return out end
  local last = rcall('INCRBY', P .. 'token', int(n))
  local by_queue, leases, score = {}, {}, lease_score(lease)
  -- A token's text is the one before with its last digit moved on, unless that digit
  -- wraps: a concatenation costs a fraction of a string.format.
  local head
  local nchanged = #changed -- (nothing else adds to it in this loop)
  for i = 1, n do
    local t = taken[i]
    local id, q, f = t[1], queues[t[2]], t[3]
    local token = last - n + i
    local digit, token_s = token % 10, nil
    if head and digit ~= 0 then token_s = head .. DIGITS[digit]
    else token_s = fmt('%d', token); head = strsub(token_s, 1, -2) end
    -- most jobs run their first attempt: '1' needs no formatting
    local attempts, attempts_s = 1, '1'
    if not t[6] and f[6] then attempts = tonumber(f[6]) + 1; attempts_s = int(attempts) end
    rcall('HSET', t[5], 'state', 'running', 'token', token_s, 'worker', worker,
      'started_at', started_s, 'lease_expires_at', lease, 'attempts', attempts_s)
    out[no + 1] = id
    out[no + 2] = q
    out[no + 3] = token
    out[no + 4] = f[1]
    out[no + 5] = f[2]
    out[no + 6] = attempts
    if t[6] then
      out[no + 7] = f[3]
      out[no + 8] = f[4]
      out[no + 9] = false
    else
      out[no + 7] = f[9]
      out[no + 8] = f[10]
      out[no + 9] = rare(f)
    end
    no = no + 9
    if t[4] then limit_record(id, token, t[4], started_s, lt) end
    local ids = by_queue[q]
    if not ids then ids = {}; by_queue[q] = ids end
    ids[#ids + 1] = id
    leases[2 * i - 1] = score
    leases[2 * i] = id
    nchanged = nchanged + 1
    changed[nchanged] = id
    -- event(id, f[1], 'running'), written out: once per job claimed
    local e = nevents
    events[e + 1] = id
    events[e + 2] = f[1]
    events[e + 3] = 'running'
    events[e + 4] = ''
    nevents = e + 4
  end
  for q, ids in pairs_(by_queue) do
    zrem_many(P .. 'ready:' .. q, ids)
    count(q, 'queued', -#ids)
    count(q, 'running', #ids)
  end
  zadd_many(P .. 'running', leases)
  return out
end

-- A job that runs under its claim's token has the fields every job has (BASE_FIELDS) and the
-- five its claim set (token, worker, started_at, lease_expires_at, attempts: see the HSET in
-- claim_jobs): when it has no more, it has none of the optional ones a finish reads.
local RUNNING_FIELDS = BASE_FIELDS + 5
-- A job's score in `purge`, for its purge time t (s: t as num() writes it): s when it has
-- at most 15 digits, else t rounded up to the next millisecond. ZADD parses a score with
-- strtod, which takes a slow path (some 2,000 instructions) past 15 significant digits, and
-- `purge` takes one per finished job; a job purged up to a millisecond late is none the
-- worse, and never early: the score is at least t. The job's purge_at stays exact.
local function purge_score(t, s)
  if #s < 16 then return s end
  local ms = math.ceil(t * 1000)
  if ms / 1000 < t then ms = ms + 1 end -- t * 1000 was rounded down
  return fmt('%.3f', ms / 1000)
end
-- End attempts: `packed` is one msgpack array (runs.py pack_outcomes) holding the number m
-- of distinct outcomes, m outcomes (state, has_result, result, error, ready_at,
-- counts_failure; '' stands for none), the number r of distinct runs, r runs (queue, task,
-- started_at, as the claim that gave the token wrote them), then per job its id, token, the
-- number of its outcome and that of its run (0 for none: they are read from the job).
-- `now_s` is the caller's now. Returns 1 per job finished, 0 per job fenced. A run's values
-- are used only once the job's state and token showed it is still that claim's run, whose
-- queue, task and started_at no one changes.
local function finish_jobs(now_s, packed)
  local now = tonum(now_s)
  -- (their lengths kept: `#t` would search each table for its length every time)
  local out, gone, purges, nout, ngone, npurges = {}, {}, {}, 0, 0, 0
  -- purge_at by result_ttl: the jobs of a batch mostly share one, so one '%.17g' serves them
  -- (and one purge_score: purge_scores by result_ttl too)
  local purge_ats, purge_scores = {}, {}
  -- The final outcomes of one run alike (a batch's jobs mostly: one claim's, one outcome)
  -- are counted together: `tally` jobs like the last one counted (tally_run: its run's place
  -- in `o`, 0 for none, which is like no other; tally_a: its outcome's), whose queue, task,
  -- started_at, outcome and error follow. flush() counts them.
  local tally, tally_run, tally_a = 0, 0, 0
  local tally_queue, tally_task, tally_started, tally_to, tally_err
  local function flush()
    if tally > 0 then
      count(tally_queue, 'running', -tally)
      count(tally_queue, tally_to, tally)
      count_end(tally_task, tally_to, tally_started, now, tally_err, tally)
      tally = 0
    end
  end
  local o = mp_unpack(packed)
  local runs = 2 + 6 * o[1] -- o[runs]: the number of runs, which follow it
  for i = runs + 1 + 3 * o[runs], #o, 4 do
    local id, token, a = o[i], o[i + 1], 6 * o[i + 2] - 4 -- a: where its outcome starts
    local to, err, run = o[a], o[a + 3], o[i + 3]
    local k = P .. 'job:' .. id -- jkey(id), written out: once per job
    -- What a retry alone needs (failures, priority, expires_at) is read by a retry alone,
    -- and the optional fields only when the job has more than RUNNING_FIELDS (see there):
    -- a field a job does not have costs the server a scan of the whole hash, and one it
    -- has some 2,700 instructions (claimed_fields): the caller's run saves three.
    local f, queue, task, started_at
    if run > 0 then
      f = rcall('HMGET', k, 'state', 'token')
      run = runs + 3 * run - 2
      queue, task, started_at = o[run], o[run + 1], o[run + 2]
    else
      f = rcall('HMGET', k, 'state', 'token', 'queue', 'task', 'started_at')
      queue, task, started_at = f[3], f[4], f[5]
    end
    nout = nout + 1
    if f[1] ~= 'running' or f[2] ~= token then
      out[nout] = 0
    else
      local ttl, unique_key, meta, stored_err, cancel = nil, nil, nil, nil, nil
      if rcall('HLEN', k) ~= RUNNING_FIELDS then
        local r = rcall('HMGET', k, 'result_ttl', 'unique_key', 'meta', 'error',
          'cancel_requested')
        ttl, unique_key, meta, stored_err, cancel = r[1], r[2], r[3], r[4], r[5]
      end
      if meta then limit_release(id, meta, queue) end
      ngone = ngone + 1
      gone[ngone] = id
      -- A running job holds no result (only a final outcome writes one, and retry() clears
      -- it), so setting the fields is all: no HDEL. A final outcome keeps 'worker' on show.
      -- error and cancel_requested are cleared ('') only where set: a field written anew
      -- costs the server a scan of the hash and its growth.
      if FINAL[to] then
        ttl = ttl or '86400'
        local purge_at = purge_ats[ttl]
        if not purge_at then
          local t = now + tonumber_(ttl)
          purge_at = num(t)
          purge_ats[ttl], purge_scores[ttl] = purge_at, purge_score(t, purge_at)
        end
        local with_result, with_error = o[a + 1] == '1', err ~= '' or has(stored_err)
        if with_result and not with_error and not cancel then
          rcall('HSET', k, 'state', to, 'finished_at', now_s, 'purge_at', purge_at,
            'lease_expires_at', '', 'result', o[a + 2])
        else
          local sets = {'state', to, 'finished_at', now_s, 'purge_at', purge_at,
            'lease_expires_at', ''}
          if with_result then sets[9] = 'result'; sets[10] = o[a + 2] end
          if with_error then sets[#sets + 1] = 'error'; sets[#sets + 1] = err end
          if has(cancel) then sets[#sets + 1] = 'cancel_requested'; sets[#sets + 1] = '' end
          rcall('HSET', k, unpk(sets))
        end
        purges[npurges + 1] = purge_scores[ttl]
        purges[npurges + 2] = id
        npurges = npurges + 2
        if LISTED[to] then rcall('ZADD', P .. 'state:' .. to, 0, id) end
        if run == 0 or run ~= tally_run or a ~= tally_a then
          flush()
          tally_run, tally_a, tally_queue, tally_task, tally_started, tally_to, tally_err =
            run, a, queue, task, started_at, to, err
        end
        tally = tally + 1
        if unique_key then free_unique(id, unique_key) end
        if meta and string.find(meta, '"flow"', 1, true) then
          flow.final(id, to, now, o[a + 1] == '1' and o[a + 2] or nil,
            err ~= '' and err or nil, meta)
        end
      else
        local r = rcall('HMGET', k, 'failures', 'priority', 'expires_at')
        local ready_at = o[a + 4] ~= '' and o[a + 4] or now_s
        local failures = tonumber(r[1] or '0')
        if o[a + 5] == '1' then failures = failures + 1 end
        rcall('HSET', k, 'state', to, 'ready_at', ready_at, 'worker', '',
          'lease_expires_at', '', 'error', err, 'failures', int(failures))
        count(queue, 'running', -1)
        place(id, to, queue, {r[2], ready_at, false, false, r[3]})
        stat(task .. SEP .. 'retries' .. SEP, 1)
      end
      -- event(id, task, to), written out: once per job finished
      local e = nevents
      events[e + 1] = id
      events[e + 2] = task or ''
      events[e + 3] = to
      events[e + 4] = ''
      nevents = e + 4
      changed[#changed + 1] = id
      out[nout] = 1
    end
  end
  flush()
  zrem_many(P .. 'running', gone)
  zadd_many(P .. 'purge', purges)
  return out
end

-- The change feed's entry for the events of one script: `json` the flat list of `n` events
-- (see event(), `n` as text), its id <last event id>-0 from the counter `event_id`.
-- (Numbers as text: Lua prints a number with a slow '%.14g', redis.call with '%.17g'.)
local KEPT = EVENTS_KEPT .. ''
local function write_events(json, n)
  local last = rcall('INCRBY', P .. 'event_id', n)
  local t = server_time()
  rcall('XADD', P .. 'events', 'MAXLEN', '~', KEPT, fmt('%d-0', last),
    'at', t[1] .. '.' .. strsub('00000' .. t[2], -6), 'e', json)
end

-- Idle workers block on a wake list each (BLPOP), so the server wakes them directly: every
-- waiter of the queue gets one push, and waits again only after looking (probe.lua).
local function wake(queue)
  local set = P .. 'waiters:' .. queue
  local waiters = rcall('SMEMBERS', set)
  if #waiters > 0 then
    for _, waiter in ipairs(waiters) do
      local list = P .. 'wake:' .. waiter
      rcall('LPUSH', list, '1')
      rcall('PEXPIRE', list, '60000') -- a waiter that died leaves nothing for long
    end
    rcall('DEL', set)
  end
end

-- The end of every script that changes jobs: write the new ready jobs and the counts, then
-- wake who listens.
local function notify()
  for queue, flat in pairs_(new_ready) do
    zadd_many(P .. 'ready:' .. queue, flat)
    count(queue, 'queued', #flat / 2)
  end
  for key, flat in pairs_(new_listed) do zadd_many(key, flat) end
  for state, by_queue in pairs_(deltas) do
    for queue, delta in pairs_(by_queue) do
      local field = state .. '|' .. queue
      if delta ~= 0 and rcall('HINCRBY', P .. 'counts', field, int(delta)) <= 0 then
        rcall('HDEL', P .. 'counts', field)
      end
    end
  end
  if nevents > 0 then write_events(json_encode(events), int(nevents / 4)) end
  for task, by_task in pairs_(ends) do
    for to, by_label in pairs_(by_task) do
      for label, n in pairs_(by_label) do
        rcall('HINCRBY', P .. 'stats', task .. SEP .. to .. SEP .. label, int(n))
      end
    end
  end
  for field, n in pairs_(stat_n) do rcall('HINCRBY', P .. 'stats', field, int(n)) end
  for task, seconds in pairs_(stat_sum) do
    rcall('HINCRBYFLOAT', P .. 'stats', task .. SEP .. 'sum' .. SEP, num(seconds))
  end
  if #changed > 0 then rcall(PUBLISH, P .. 'changed', concat(changed, ' ')) end
  for queue in pairs_(woken) do wake(queue) end
end

-- script body follows

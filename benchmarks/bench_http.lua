-- wrk script for benchmarks/bench_http.py: every request is a NEW transaction (unique id per
-- wrk thread and counter), senders cycle over 5,000 accounts, amounts and terminals vary, so the
-- feature store and the audit log do real work (no idempotent replays).
-- Usage: TXG_KEY=txg_... TXG_RUN=r1 wrk -t2 -c32 -d5s -s bench_http.lua http://127.0.0.1:8000/v1/score

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = (os.getenv("TXG_RUN") or "run") .. "-" .. tid .. "-"
  counter = 0
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("TXG_KEY")
  if key then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  counter = counter + 1
  local s = (counter * 7 + tid * 131) % 5000
  local amount = 5 + (counter * 7919) % 2500
  local minute = math.floor(counter / 60) % 60
  local second = counter % 60
  local body = string.format(
    '{"transaction_id":"%s%d","occurred_at":"2026-03-01T%02d:%02d:%02dZ","amount":%d.25,'
      .. '"currency":"USD","type":"card","channel":"ecommerce",'
      .. '"sender":{"account_id":"acct-%d","country":"FR","kyc_level":2},'
      .. '"recipient":{"account_id":"m-%d","country":"FR"},'
      .. '"merchant_id":"m-%d","terminal_id":"term-%d","device_id":"dev-%d","ip":"203.0.113.%d"}',
    prefix, counter, 10 + math.floor(counter / 3600) % 12, minute, second, amount,
    s, s % 300, s % 300, s % 700, s, s % 250)
  return wrk.format("POST", nil, nil, body)
end

-- wrk -s scripts/wrk/random-keys.lua URL   GET {ROUTE}/{random key}
-- Env: ROUTE (default /api/customers), KEYS_FILE or KEYS, MISS_RATIO (0..1, share of absent keys).
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local keys, route, miss
function init(args)
  keys = common.load_keys()
  route = os.getenv("ROUTE") or "/api/customers"
  miss = tonumber(os.getenv("MISS_RATIO") or "0")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  if miss > 0 and math.random() < miss then
    return wrk.format("GET", route .. "/absent-" .. math.random(1, 1e9))
  end
  return wrk.format("GET", route .. "/" .. keys[math.random(#keys)])
end
done = common.report

-- wrk -s scripts/wrk/pipelined.lua URL   DEPTH (default 16) requests per write.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local keys, route, depth
function init(args)
  keys = common.load_keys()
  route = os.getenv("ROUTE") or "/api/customers"
  depth = tonumber(os.getenv("DEPTH") or "16")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format("GET", route .. "/" .. keys[math.random(#keys)])
  end
  return table.concat(batch)
end
done = common.report

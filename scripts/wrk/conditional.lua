-- wrk -s scripts/wrk/conditional.lua URL   conditional GETs: If-None-Match on
-- a share of requests (INM_RATIO, default 0.5); `*` matches any stored ETag, so
-- those take the 304 path. Env as random-keys.lua.
package.path = debug.getinfo(1, "S").source:match("@?(.*/)") .. "?.lua;" .. package.path
local common = require("common")
local keys, route, ratio
function init(args)
  keys = common.load_keys()
  route = os.getenv("ROUTE") or "/api/customers"
  ratio = tonumber(os.getenv("INM_RATIO") or "0.5")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local path = route .. "/" .. keys[math.random(#keys)]
  if math.random() < ratio then
    return wrk.format("GET", path, {["If-None-Match"] = "*"})
  end
  return wrk.format("GET", path)
end
done = common.report

-- Shared by the wrk scripts: keys from KEYS_FILE (one per line) or the
-- pattern acct-%08d below KEYS (default 100000); percentiles at the end.
local M = {}

function M.load_keys()
  local keys = {}
  local file = os.getenv("KEYS_FILE")
  if file and file ~= "" then
    for line in io.lines(file) do
      if line ~= "" then keys[#keys + 1] = line end
    end
  end
  if #keys == 0 then
    local n = tonumber(os.getenv("KEYS") or "100000")
    for i = 0, n - 1 do keys[#keys + 1] = string.format("acct-%08d", i) end
  end
  return keys
end

function M.report(summary, latency, requests)
  local errors = summary.errors
  io.write("------------------------------\n")
  for _, p in ipairs({50, 90, 99, 99.9, 99.99}) do
    io.write(string.format("p%-6s %10.1f us\n", p, latency:percentile(p)))
  end
  io.write(string.format("max     %10.1f us\n", latency.max))
  io.write(string.format("requests %d, non-2xx/3xx %d, socket errors %d\n", summary.requests, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end

return M

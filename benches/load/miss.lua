-- A new URL per request: the miss path (store + forward).
local n = 0
local prefix = os.getenv("MISS_PREFIX") or tostring(os.time())
request = function()
  n = n + 1
  return wrk.format("GET", "/miss/" .. prefix .. "/" .. n)
end

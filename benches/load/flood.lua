-- A new URL per request, with a body of 256 B to 64 KiB (the origin's
-- /s<n>/ locations): the memory bound under mixed sizes.
local n = 0
local prefix = os.getenv("MISS_PREFIX") or tostring(os.time())
request = function()
  n = n + 1
  return wrk.format("GET", "/s" .. (n % 9) .. "/" .. prefix .. "/" .. n)
end

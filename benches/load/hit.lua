-- 100 hot URLs, round robin.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/hit/" .. (n % 100))
end

-- No rule matches: plain proxying.
request = function()
  return wrk.format("GET", "/pass/x")
end

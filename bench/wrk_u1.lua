-- U1's capacity cell (bench/run.py, U1-S2): cycles through the paths of the fixed-rate runs, /u1/0 ... /u1/63
-- (bench/u1_upstream.py's paths()), so wrk and h2load ask for the same mix of body sizes.
local n = 0
request = function()
  local path = "/u1/" .. n
  n = (n + 1) % 64
  return wrk.format(nil, path)
end

-- S4c misses: every request asks about a URL nginx has not seen (a new query each time), so nginx's decision cache
-- never answers and asks the gateway, then keeps its answer. bench/run.py appends wrk_report.lua's done() to this.
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, "/?miss=" .. counter)
end

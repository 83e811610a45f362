-- Prints wrk's summary as one JSON line (prefixed WRK_JSON) with exact percentiles from wrk's latency histogram.
-- Used by bench/run.py: wrk -s bench/wrk_report.lua --latency ...; latencies are microseconds.
-- No request()/response() hooks, so wrk keeps its fast C path for every request.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end

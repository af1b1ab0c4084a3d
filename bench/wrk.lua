-- wrk script for the API case: GET /users/{id}/personal over the seeded users (ids drawn with a fixed
-- seed), with the bench's bearer token (sent to the floors too, which ignore it: the same requests for
-- all); prints one "BENCH {json}" summary line.
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")}
local users = tonumber(os.getenv("BENCH_USERS"))
math.randomseed(tonumber(os.getenv("BENCH_SEED")))

request = function()
  return wrk.format("GET", string.format("/users/bench-%05d/personal", math.random(users)), headers)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end

-- GET a random person's card; BENCH_PERSONS and BENCH_TOKEN come from bench/run.sh.
local persons = tonumber(os.getenv("BENCH_PERSONS") or "1000")
local token = os.getenv("BENCH_TOKEN")
math.randomseed(42)
request = function()
  local id = math.random(1, persons)
  return wrk.format("GET", "/api/v1/persons/" .. id .. "/card", { ["Authorization"] = "Bearer " .. token })
end

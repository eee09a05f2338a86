-- GET one of the paths in BENCH_PATHS (a file, one path per line), at random; no token:
-- the recipient side's open pixel and click redirect, as a mailing's burst hits them.
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
math.randomseed(7)
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)])
end

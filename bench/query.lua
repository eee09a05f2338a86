-- POST the newsletter query (count and the first page of 50); BENCH_TOKEN from bench/run.sh.
wrk.method = "POST"
wrk.path = "/api/v1/queries/run"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.body = [[{"conditions": {"all": [
  {"field": "consent.1", "op": "eq", "value": true},
  {"field": "mailable", "op": "eq", "value": true},
  {"field": "contact_pressure", "op": "lt", "value": 3}]}, "per_page": 50}]]

-- wrk script: POST one digits inference (body from the file named by WRK_BODY) on kept-alive connections.
-- Usage: WRK_BODY=body.json wrk -c8 -t2 -d60s -s benchmarks/wrk-infer.lua http://127.0.0.1:8080
local f = assert(io.open(os.getenv("WRK_BODY"), "r"))
wrk.method = "POST"
wrk.path = "/v2/models/digits/infer"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

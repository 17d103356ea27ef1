-- Whole authorization-code sign-ins, driven by wrk: each connection is one browser that
-- opens /authorize, loads the login page, posts the form, and has its client redeem the
-- code at /token; then it starts again as a new browser on the same connection. Run with
-- one connection per thread (wrk -tN -cN), since wrk keeps this state per thread.
--
-- bench/signin.py prepends `config = {...}`: client_id, authorization (the client's Basic
-- header), redirect_uri, logins (one user's email and password, form-encoded, per browser:
-- a sign-in load is many people, and attempts in flight count toward each account's
-- throttle), and pkce, a list of {verifier, challenge} pairs that browsers take in turn.

local step, pair, flow, flow_id, csrf_cookie, csrf_token, verifier, code
completed, failures = 0, 0

local function encode(text)
  return (text:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function restart()
  step, csrf_cookie = "authorize", nil
  pair = (pair or 0) % #config.pkce + 1
  verifier = config.pkce[pair][1]
end

local function path_of(location)
  return (location:gsub("^https?://[^/]+", ""))
end

restart()

request = function()
  if step == "authorize" then
    return wrk.format("GET", "/authorize?response_type=code&scope=openid&state=bench"
      .. "&code_challenge_method=S256&client_id=" .. encode(config.client_id)
      .. "&redirect_uri=" .. encode(config.redirect_uri)
      .. "&code_challenge=" .. config.pkce[pair][2])
  elseif step == "page" then
    return wrk.format("GET", flow)
  elseif step == "login" then
    return wrk.format("POST", "/login", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Cookie"] = csrf_cookie,
    }, "flow=" .. encode(flow_id) .. "&csrf_token=" .. csrf_token .. "&"
      .. config.logins[browser % #config.logins + 1])
  else
    return wrk.format("POST", "/token", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["Authorization"] = config.authorization,
    }, "grant_type=authorization_code&code=" .. encode(code) .. "&code_verifier=" .. verifier
      .. "&redirect_uri=" .. encode(config.redirect_uri))
  end
end

response = function(status, headers, body)
  local ok = false
  if step == "authorize" and status == 303 then
    flow = path_of(headers["location"] or headers["Location"] or "")
    flow_id = flow:match("[?&]flow=([^&]+)")
    step, ok = "page", flow_id ~= nil
  elseif step == "page" and status == 200 then
    local set = headers["set-cookie"] or headers["Set-Cookie"] or ""
    csrf_cookie = set:match("^([^;]+)")
    csrf_token = body:match('name="csrf_token" value="(%x+)"')
    step, ok = "login", csrf_cookie ~= nil and csrf_token ~= nil
  elseif step == "login" and status == 303 then
    code = (headers["location"] or headers["Location"] or ""):match("[?&]code=([^&]+)")
    step, ok = "token", code ~= nil
  elseif step == "token" and status == 200 then
    completed = completed + 1
    restart()
    ok = true
  end
  if not ok then
    failures = failures + 1
    restart()
  end
end

local threads = {}

setup = function(thread)
  thread:set("browser", #threads)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local total, failed = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("completed")
    failed = failed + thread:get("failures")
  end
  io.stderr:write(string.format(
    'WRKJSON {"completed": %d, "failures": %d, "seconds": %f}\n',
    total, failed, summary.duration / 1e6))
end

-- tests/faults/mix.lua - the load tests/faults.sh runs through the gateway
-- (or nginx) with wrk while it injects a fault: a realistic mix of
-- redirects, expands and a few users shortening, and a count of what
-- every request got back, so the harness can say what failed, when, and
-- whether anything a client was told had happened went missing.
--
--   wrk -t2 -c8 -d120s --timeout 10s -s tests/faults/mix.lua URL -- \
--       OUT CODES TOKENS OWNER_TOKEN RUN DELAY_MS
--
--   OUT       where done() writes the results (one JSON object, below)
--   CODES     a file of short codes, one a line: the links redirected to
--             and expanded (made by the harness just before the run)
--   TOKENS    a file of bearer tokens, one a line: the users who shorten
--   OWNER_TOKEN  the bearer token of the user who owns the CODES links
--             (a registered user: GET /api/v1/users/me answers 200)
--   RUN       a tag for this run (letters and digits), put in every
--             request id so that this run's requests can be found in the
--             services' access logs
--   DELAY_MS  each connection waits this long after an answer before its
--             next request: the load is steady, not as fast as possible
--             (two shared cores; the point is faults, not throughput)
--
-- The mix, by request number on each thread, out of every 20: 11 GET
-- /r/<code> (a redirect: 302 expected), 5 GET /api/v1/expand/<code>
-- (200), 2 POST /api/v1/shorten as one of the users (201), 1 GET
-- /api/v1/users/me and 1 GET /api/v1/analytics/<code> as the links' owner
-- (200 each), so every service is on the path of some of the traffic.
--
-- How an answer is matched to its request: wrk's response() is not told
-- which request an answer belongs to, so every request carries its own
-- X-Request-Id, "<RUN>.<kind>.<thread>.<n>[.<code>]", and the kit echoes a
-- client's sane request id (request_id.c; nginx passes it through both
-- ways). An answer without it (nginx's own error page) counts as kind "?".
--
-- What each thread keeps (its own Lua state; done() gathers them with
-- thread:get(), which copies flat tables only: wrk 4.1 crashes copying a
-- table inside a table, so nothing here nests):
--   statuses["<kind> <status>"]  answers by kind and status
--   ok_in[t], failed_in[t]   answers completed in the 100 ms from t * 100
--                            ms (CLOCK_REALTIME, so the harness can cut
--                            the run into windows with the times it wrote
--                            down), ok or not
--   created                  every code a 201 returned: links the client
--                            was told were saved
--   clicks[code]             302s per code: clicks the client caused
--   clicked                  the request ids of those 302s
--   unsaved                  the request ids of shortens that did not get
--                            a 201 (the harness asks the url-shortener's
--                            log whether it made the link all the same)
--   problem_json, problem_other  failed answers whose Content-Type was
--                            application/problem+json, and the others
--   samples[status]          the first failed answer of each status
--                            (Content-Type and the start of the body)
-- done() writes them all, with wrk's own summary (requests, socket errors),
-- as one JSON object to OUT.

local ffi = require("ffi")
ffi.cdef [[
typedef long time_t;
struct timespec { time_t tv_sec; long tv_nsec; };
int clock_gettime(int clock_id, struct timespec *now);
]]
local CLOCK_REALTIME = 0
local timespec = ffi.new("struct timespec")

local function now_ms()
	ffi.C.clock_gettime(CLOCK_REALTIME, timespec)
	return tonumber(timespec.tv_sec) * 1000 + math.floor(tonumber(timespec.tv_nsec) / 1000000)
end

local function read_lines(path)
	local lines = {}
	local file = assert(io.open(path, "r"), "cannot read " .. path)
	for line in file:lines() do
		if line ~= "" then
			lines[#lines + 1] = line
		end
	end
	file:close()
	assert(#lines > 0, path .. " is empty")
	return lines
end

-- ---- setup: the main Lua state numbers the threads ----

local threads = {}

function setup(thread)
	threads[#threads + 1] = thread
	thread:set("thread_number", #threads)
end

-- ---- running: each thread's own Lua state ----

function init(args)
	out_file, codes, tokens = args[1], read_lines(args[2]), read_lines(args[3])
	owner_token, run, delay_ms = args[4], args[5], tonumber(args[6])
	sent = 0
	statuses, ok_in, failed_in, created, clicks, clicked = {}, {}, {}, {}, {}, {}
	unsaved = {}
	problem_json, problem_other, samples = 0, 0, {}
end

function delay()
	return delay_ms
end

function request()
	sent = sent + 1
	local slot = sent % 20
	local code = codes[(sent * 7 + thread_number) % #codes + 1]
	local id = string.format("%s.%%s.%d.%d", run, thread_number, sent)
	if slot < 11 then
		return wrk.format("GET", "/r/" .. code,
			{ ["X-Request-Id"] = string.format(id, "r") .. "." .. code,
			  ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" })
	elseif slot < 16 then
		return wrk.format("GET", "/api/v1/expand/" .. code,
			{ ["X-Request-Id"] = string.format(id, "e") })
	elseif slot == 18 then
		return wrk.format("GET", "/api/v1/users/me",
			{ ["X-Request-Id"] = string.format(id, "u"),
			  ["Authorization"] = "Bearer " .. owner_token })
	elseif slot == 19 then
		return wrk.format("GET", "/api/v1/analytics/" .. code,
			{ ["X-Request-Id"] = string.format(id, "a"),
			  ["Authorization"] = "Bearer " .. owner_token })
	end
	local token = tokens[sent % #tokens + 1]
	return wrk.format("POST", "/api/v1/shorten",
		{ ["X-Request-Id"] = string.format(id, "s"),
		  ["Authorization"] = "Bearer " .. token,
		  ["Content-Type"] = "application/json" },
		string.format('{"url":"https://example.com/faults/%s/%d/%d"}', run, thread_number, sent))
end

-- What "ok" is for each kind; anything else is a failure.
local expected = { r = 302, e = 200, s = 201, u = 200, a = 200 }

local function header(headers, wanted)
	for name, value in pairs(headers) do
		if string.lower(name) == wanted then
			return value
		end
	end
	return nil
end

function response(status, headers, body)
	local id = header(headers, "x-request-id") or ""
	local kind = "?"
	local code = nil
	if string.sub(id, 1, #run + 1) == run .. "." then
		kind = string.sub(id, #run + 2, #run + 2)
		code = string.match(id, "^[^.]+%.r%.%d+%.%d+%.(.+)$")
	end

	local key = tostring(status)
	statuses[kind .. " " .. key] = (statuses[kind .. " " .. key] or 0) + 1

	local ok = expected[kind] == status
	local t = math.floor(now_ms() / 100)
	if ok then
		ok_in[t] = (ok_in[t] or 0) + 1
	else
		failed_in[t] = (failed_in[t] or 0) + 1
	end

	if not ok then
		local content_type = header(headers, "content-type") or ""
		if string.find(content_type, "application/problem+json", 1, true) == 1 then
			problem_json = problem_json + 1
		else
			problem_other = problem_other + 1
		end
		if samples[key] == nil then
			samples[key] = content_type .. " " .. string.sub(body or "", 1, 300)
		end
	end

	if not ok and kind == "s" then
		unsaved[#unsaved + 1] = id
	elseif ok and kind == "s" then
		local made = string.match(body, '"code"%s*:%s*"([^"]+)"')
		if made ~= nil then
			created[#created + 1] = made
		end
	elseif ok and kind == "r" and code ~= nil then
		clicks[code] = (clicks[code] or 0) + 1
		clicked[#clicked + 1] = id
	end
end

-- ---- done: the main Lua state gathers the threads' tables ----

local function json_string(text)
	return '"' .. string.gsub(text, '[%c"\\]', function(c)
		return string.format("\\u%04x", string.byte(c))
	end) .. '"'
end

function done(summary, latency, requests)
	local statuses_all, buckets, created_all, clicks_all, clicked_all = {}, {}, {}, {}, {}
	local unsaved_all = {}
	local problem_json_all, problem_other_all, samples_all = 0, 0, {}
	local out_name
	for _, thread in ipairs(threads) do
		out_name = thread:get("out_file")
		for key, n in pairs(thread:get("statuses") or {}) do
			statuses_all[key] = (statuses_all[key] or 0) + n
		end
		for t, n in pairs(thread:get("ok_in") or {}) do
			buckets[t] = buckets[t] or { 0, 0 }
			buckets[t][1] = buckets[t][1] + n
		end
		for t, n in pairs(thread:get("failed_in") or {}) do
			buckets[t] = buckets[t] or { 0, 0 }
			buckets[t][2] = buckets[t][2] + n
		end
		for _, code in ipairs(thread:get("created") or {}) do
			created_all[#created_all + 1] = code
		end
		for code, n in pairs(thread:get("clicks") or {}) do
			clicks_all[code] = (clicks_all[code] or 0) + n
		end
		for _, id in ipairs(thread:get("clicked") or {}) do
			clicked_all[#clicked_all + 1] = id
		end
		for _, id in ipairs(thread:get("unsaved") or {}) do
			unsaved_all[#unsaved_all + 1] = id
		end
		problem_json_all = problem_json_all + (thread:get("problem_json") or 0)
		problem_other_all = problem_other_all + (thread:get("problem_other") or 0)
		for status, sample in pairs(thread:get("samples") or {}) do
			samples_all[status] = samples_all[status] or sample
		end
	end

	-- {"requests", "duration_us", "socket_errors": {...}, "statuses":
	-- {"<kind>": {"<status>": n}}, "buckets": [[t, ok, failed], ...],
	-- "created": [...], "clicks": {...}, "clicked": [...], "unsaved": [...], "problem":
	-- {"json", "other"}, "samples": {"<status>": "..."}}
	local parts = {}
	local function add(text) parts[#parts + 1] = text end
	local function add_list(values, quote)
		for i, value in ipairs(values) do
			add((i > 1 and "," or "") .. (quote and json_string(value) or value))
		end
	end
	add(string.format('{"requests":%d,"duration_us":%d,', summary.requests, summary.duration))
	add(string.format('"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},',
		summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
	local by_kind = {}
	for key, n in pairs(statuses_all) do
		local kind, status = string.match(key, "^(%S+) (%S+)$")
		by_kind[kind] = by_kind[kind] or {}
		by_kind[kind][#by_kind[kind] + 1] = json_string(status) .. ":" .. n
	end
	local kinds = {}
	for kind, list in pairs(by_kind) do
		kinds[#kinds + 1] = json_string(kind) .. ":{" .. table.concat(list, ",") .. "}"
	end
	add('"statuses":{' .. table.concat(kinds, ",") .. '},"buckets":[')
	local rows = {}
	for t, counts in pairs(buckets) do
		rows[#rows + 1] = string.format("[%d,%d,%d]", t, counts[1], counts[2])
	end
	add_list(rows, false)
	add('],"created":[')
	add_list(created_all, true)
	add('],"clicks":{')
	local pairs_out = {}
	for code, n in pairs(clicks_all) do
		pairs_out[#pairs_out + 1] = json_string(code) .. ":" .. n
	end
	add_list(pairs_out, false)
	add('},"clicked":[')
	add_list(clicked_all, true)
	add('],"unsaved":[')
	add_list(unsaved_all, true)
	add(string.format('],"problem":{"json":%d,"other":%d},"samples":{', problem_json_all, problem_other_all))
	local samples_out = {}
	for status, sample in pairs(samples_all) do
		samples_out[#samples_out + 1] = json_string(status) .. ":" .. json_string(sample)
	end
	add_list(samples_out, false)
	add("}}\n")

	local file = assert(io.open(out_name, "w"), "cannot write " .. tostring(out_name))
	file:write(table.concat(parts))
	file:close()
end

-- wrk script: send each request with the next token of a pool, round robin.
--   wrk ... -s bench/rotate.lua URL -- TOKENS_FILE [HEADER]
-- Without HEADER each token goes in `Authorization: Bearer`; with one (e.g. X-API-KEY),
-- as that header's bare value.
-- The request strings are built once in init() so the load generator stays cheap.

local reqs = {}
local n = 0
local i = 0

function init(args)
  local file = args[1]
  if file == nil then
    error("rotate.lua: pass the tokens file after --")
  end
  local header = args[2]
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      if header == nil then
        reqs[n] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
      else
        reqs[n] = wrk.format(nil, nil, { [header] = line })
      end
    end
  end
  if n == 0 then
    error("rotate.lua: no tokens in " .. file)
  end
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return reqs[i]
end

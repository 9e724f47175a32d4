-- wrk script: send each request with the next token of a pool, round robin.
--   wrk ... -s bench/rotate.lua URL -- TOKENS_FILE
-- The request strings are built once in init() so the load generator stays cheap.

local reqs = {}
local n = 0
local i = 0

function init(args)
  local file = args[1]
  if file == nil then
    error("rotate.lua: pass the tokens file after --")
  end
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
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

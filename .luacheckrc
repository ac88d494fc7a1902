-- luacheck configuration: Lua 5.4 everywhere, as embedded by the host.
std = "lua54"
max_line_length = 120
files["tests/**/*_spec.lua"] = { std = "+busted" }
files["tests/*_spec.lua"] = { std = "+busted" }

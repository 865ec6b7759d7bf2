"""aiohttp adapters shared by the proxy's listener (gateway.server) and the aiohttp
embedding (gateway.embed): who is calling, CORS preflights and headers, sending a
refusal's answer. Neither side imports the other through them."""

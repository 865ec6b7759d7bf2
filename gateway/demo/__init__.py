"""Demo upstreams for rehearsals, tests and `make run`: the EP212 signal API
(`signal-upstream`, upstream.py) and an OpenAI-compatible completion endpoint
with usage (llm.py). Nothing of the gateway imports them."""

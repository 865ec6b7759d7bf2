"""Price sources outside the route file: the operator's pricing services.

`ondemand.OnDemandPricer` is what the paywall asks (it opens each source's
client on first use); `hook` is the HTTP pricing hook; `client` speaks
Aperture's pricer protocol (`pricesrpc.Prices`) over gRPC: `GetPrice` before
a 402, `ChallengeMinted` as it is minted, `AuthorizeRequest` per paid request
and `ReportUsage` with the answer's tail (docs/metering.md). Importing this
package loads neither aiohttp nor grpc: import the module you need.
"""

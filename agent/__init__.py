"""The Vantage agent: measures from a volunteer's device, spools results, uploads them signed.

Depends only on ``protocol`` and the five agent packages (aiohttp, dnspython, cryptography, psutil,
msgpack); never on ``collector``.
"""

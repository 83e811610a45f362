"""The pure domain: no network, no storage, no framework, time passed in as an argument.

A test (tests/unit/test_architecture.py) enforces that nothing here imports aiohttp, redis, SQLAlchemy, hvac or boto3.
"""

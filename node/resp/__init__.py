"""The Redis front-end: RESP2/RESP3 on an asyncio Protocol, translating to domain ops."""

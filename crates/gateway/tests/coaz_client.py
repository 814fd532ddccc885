"""An agent on the official Python MCP SDK (PyPI `mcp`), driven by
tests/coaz.rs: it connects to the Mandate gateway with its task token, lists
the tools (and the COAZ mappings their server declared), makes an allowed
call, a denied one and one whose arguments try to name another agent, and
prints what happened as one JSON line for the Rust test to check."""

import asyncio
import json
import os

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def attempt(session, name, arguments):
    try:
        result = await session.call_tool(name, arguments)
    except MCPError as e:
        return {"code": e.code, "message": e.message}
    text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
    return {"text": text, "is_error": bool(result.is_error)}


async def main():
    headers = {"Authorization": f"Bearer {os.environ['TASK_TOKEN']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(os.environ["GATEWAY_URL"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                tools = {t.name: t.input_schema for t in listed.tools}
                report = {
                    "tools": {name: {"x-authzen-mapping": s.get("x-authzen-mapping")} for name, s in tools.items()},
                    "allowed": await attempt(session, "get_customer", {"id": "cust-42"}),
                    "denied": await attempt(session, "delete_customer", {"id": "cust-42"}),
                    "spoofed": await attempt(session, "spoof_agent", {"id": "cust-42", "agent": "spiffe://mallory/agent/x"}),
                }
    print(json.dumps(report))


asyncio.run(main())

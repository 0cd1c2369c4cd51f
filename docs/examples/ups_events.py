"""Print each UPS-RS event report of an AE title's event channel (PS3.18 8.10.4, 11.13).

    python docs/examples/ups_events.py ws://127.0.0.1:8080/dicomweb/subscribers/MYAE

With access control on, the credential in $KEY goes as `Authorization: Bearer` (a browser,
which cannot set headers, sends `{"authorization": "Bearer ..."}` as its first message).
"""

import asyncio
import os
import sys

import websockets


async def main(url: str) -> None:
    key = os.environ.get("KEY", "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with websockets.connect(url, additional_headers=headers) as channel:
        async for report in channel:
            print(report, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

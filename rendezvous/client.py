"""A bounded load client for the front door: `count` requests at `rate` per second, at most
`concurrency` in flight, stopped after `timeout` seconds whatever happened.

    results = asyncio.run(send(url, bodies, rate=300, concurrency=32, timeout=30))
    [r.answer for r in results if r.status == 200]

Requests leave on an open-loop schedule (request i at i / rate seconds), so a slow answer does not
slow the offered load, as with real traffic; `concurrency` bounds what a stalled service can pile
up. Each `Result` holds the HTTP status, the answer and the client's own time for it (send to
last byte). Outcomes go the same way (`post_outcomes`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Result:
    """One request as the client saw it; `status` 0 if it got no HTTP answer (`error` says why)."""

    index: int
    body: bytes
    status: int = 0
    answer: dict[str, Any] | None = None
    client_ms: float = 0.0
    error: str | None = None


async def send(
    url: str,
    bodies: Sequence[bytes | dict[str, Any]],
    *,
    rate: float = 300.0,
    concurrency: int = 32,
    timeout: float = 60.0,
    path: str = "/v1/score",
) -> list[Result]:
    """Post every body to ``url + path`` (see the module docstring); results in body order."""
    results = [Result(i, b if isinstance(b, bytes) else json.dumps(b).encode()) for i, b in enumerate(bodies)]
    gate = asyncio.Semaphore(concurrency)
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def one(r: Result) -> None:
            delay = began + r.index / rate - time.monotonic() if rate > 0 else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            async with gate:
                t = time.perf_counter()
                try:
                    async with session.post(
                        url + path, data=r.body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        r.status = resp.status
                        r.answer = await resp.json()
                except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                    r.error = f"{type(e).__name__}: {e}"
                r.client_ms = (time.perf_counter() - t) * 1000

        tasks = [asyncio.ensure_future(one(r)) for r in results]
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    for r, task in zip(results, tasks):
        if task.cancelled() and r.error is None:
            r.error = f"not answered within the client's {timeout:g} s"
    return results


async def post_outcomes(url: str, outcomes: Sequence[dict[str, Any]], **kw: Any) -> list[Result]:
    """Post outcome records (``{"request_id", "label" or "reward"}``) to ``/v1/outcome``."""
    return await send(url, outcomes, path="/v1/outcome", **kw)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, linear between order statistics; NaN if empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    x = q * (len(s) - 1)
    lo = int(x)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (x - lo)

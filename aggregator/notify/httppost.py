"""One POST of a notification body to an HTTP receiver (webhook, Alertmanager), as a `Delivery`.

Redirects are not followed (the answer says to configure the final URL); a timeout or a connection
failure is worth a retry, a malformed URL is not; the status decides the rest (`classify_http`).
"""

from __future__ import annotations

import aiohttp

from .base import Delivery, classify_http, mask_url, one_line


async def post(
    url: str,
    data: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    now: float,
    what: str,
    session: aiohttp.ClientSession | None = None,
) -> Delivery:
    """POST ``data`` to ``url`` (``what`` names the receiver in the delivery log: "webhook")."""
    try:
        if session is not None:
            return await _post(session, url, data, headers, timeout, now)
        async with aiohttp.ClientSession() as own:
            return await _post(own, url, data, headers, timeout, now)
    except TimeoutError:
        return Delivery(ok=False, retryable=True, detail=f"no answer within {timeout:g} s")
    except aiohttp.InvalidURL as e:
        return Delivery(ok=False, detail=one_line(f"the {what} URL is not valid: {e}"))
    except aiohttp.ClientError as e:
        return Delivery(ok=False, retryable=True, detail=one_line(f"{what} unreachable: {e}"))


async def _post(  # noqa: PLR0917 (private, one call site)
    session: aiohttp.ClientSession, url: str, data: bytes, headers: dict[str, str], timeout: float, now: float
) -> Delivery:
    limit = aiohttp.ClientTimeout(total=timeout)
    async with session.post(url, data=data, headers=headers, timeout=limit, allow_redirects=False) as r:
        text = (await r.content.read(300)).decode("utf-8", "replace")
        if 300 <= r.status < 400:
            text = f"redirected to {mask_url(r.headers.get('Location', '?'))}; configure the final URL"
        return classify_http(r.status, retry_after=r.headers.get("Retry-After"), now=now, detail=text)

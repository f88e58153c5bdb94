"""Requests to PassEntry, straight to a transport.

A backfill asks for page after page of 100 scans, and ``httpx.Client`` spent about as much
CPU on each request as the HTTP/1.1 exchange did: the URL parsed three times, cookies
extracted, the auth and redirect flows, a logging call. The bridge needs none of that. It
talks to one base URL, with the same headers every time, and it follows no redirects and
keeps no cookies. So :class:`ApiHttp` builds the request once and hands it to the transport:
libcurl's (:mod:`bridge.passentry.curl`), with the environment's CA settings and its proxy
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, minus ``NO_PROXY``).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from urllib.parse import urlencode

import httpx

__all__ = ["ApiHttp", "environment_proxy"]


class ApiHttp:
    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        timeout: httpx.Timeout,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``transport``: tests pass an ``httpx.MockTransport``; otherwise libcurl's, through
        the environment's proxy for ``base_url``, if it names one."""
        self._base = base_url.rstrip("/")
        # What httpx.Client sends by default, and the response decodes.
        self._headers = httpx.Headers(
            {"Accept-Encoding": "gzip, deflate", "Connection": "keep-alive", **headers}
        )
        self._extensions = {"timeout": timeout.as_dict()}
        if transport is None:
            # Imported here: loading libcurl and its libraries costs about 20 ms of CPU,
            # which commands that never ask PassEntry need not pay.
            from bridge.passentry.curl import CurlTransport

            transport = CurlTransport(environment_proxy(self._base))
        self._transport = transport

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request, its whole body read; httpx's TransportError and TimeoutException
        as the transport raises them. ``timeout``: this request's, instead of the client's."""
        request = httpx.Request(
            method,
            # One parse of the finished URL: httpx.Request(params=...) parses it twice more.
            self._base + path + ("?" + urlencode(params) if params else ""),
            headers=self._headers if headers is None else {**self._headers, **headers},
            content=content,
            extensions=self._extensions if timeout is None else {"timeout": timeout.as_dict()},
        )
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        response.request = request
        return response

    def close(self) -> None:
        self._transport.close()


def environment_proxy(url: str) -> httpx.Proxy | None:
    """The proxy the environment names for ``url`` (``<scheme>_proxy``, then ``all_proxy``,
    either case), or None when there is none or ``no_proxy`` covers its host."""
    target = httpx.URL(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(target.host):
        return None
    return httpx.Proxy(proxy)

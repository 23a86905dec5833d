"""``POST /api/v1/push`` and ``/api/v1/enroll`` over HTTP: every status of the contract."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from edgewatch.aggregator.ingest import AGENT_MAX_FAILURES
from edgewatch.aggregator.writer import Overloaded
from edgewatch.protocol import Batch, decode, encode, next_reference

from .conftest import T0, batch, harness


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_push_is_stored_once_and_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            b = batch("web-1", 1, [T0, T0 + 10_000])
            status, body = await h.push(b)
            assert (status, body) == (200, {"ack": 1, "commands": []})
            assert h.sql("SELECT count(*) FROM recent") == [(1,)]
            status, body = await h.push(b)  # the agent did not see the answer: send again
            assert (status, body["ack"]) == (200, 1)
            assert h.sql("SELECT count(*) FROM recent") == [(1,)]
            assert h.ingest.duplicates.get() == 1
            assert h.ingest.samples.get() == 6
            assert h.sql("SELECT last_seen_ms, interval_ms FROM hosts") == [(T0 + 10_000, 10_000)]

    run(scenario())


def test_delta_frames_need_the_newest_acknowledged_reference(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            b1 = batch("web-1", 1, [T0])
            b2 = batch("web-1", 2, [T0 + 10_000])
            status, body = await h.push(b2, ref=decode(encode(b1)))
            assert status == 409
            assert "key frame" in body["error"]
            assert (await h.push(b1))[0] == 200
            ref = next_reference(None, decode(encode(b1)))
            assert (await h.push(b2, ref=ref))[0] == 200
            ref = next_reference(ref, decode(encode(b2, ref), ref))
            b3 = batch("web-1", 3, [T0 + 20_000])
            assert (await h.push(b3, ref=ref))[0] == 200
            # a back-log key frame (older seq) does not replace the reference
            old = batch("web-1", 0, [T0 - 10_000])
            assert (await h.push(old))[0] == 200
            ref = next_reference(ref, decode(encode(b3, ref), ref))
            assert (await h.push(batch("web-1", 4, [T0 + 30_000]), ref=ref))[0] == 200
            assert h.ingest.frames.get() == 5

    run(scenario())


def test_tokens_missing_wrong_or_revoked_get_401(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            token = await h.add_agent("web-1")
            b = batch("web-1", 1, [T0])
            async with h.client.post("/api/v1/push", data=encode(b)) as r:
                assert r.status == 401
                assert "token" in (await r.json())["error"]
            assert (await h.push(b, token=token[:-2] + "xx"))[0] == 401
            assert (await h.push(b, token="ewa_nobody.secret"))[0] == 401
            from edgewatch.aggregator import accounts

            await h.store.write(lambda conn: accounts.revoke_host(conn, "web-1", T0))
            h.ingest.forget_host("web-1")
            status, body = await h.push(b, token=token)
            assert status == 401
            assert "revoked" in body["error"]
            assert h.sql("SELECT count(*) FROM recent") == [(0,)]
            assert h.ingest.rejected.get(reason="unauthorized") == 4

    run(scenario())


def test_a_frame_of_another_agent_is_403(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            token = await h.add_agent("web-2")
            status, body = await h.push(batch("web-1", 1, [T0]), token=token)
            assert status == 403
            assert "web-1" in body["error"]
            assert "web-2" in body["error"]

    run(scenario())


def test_malformed_future_and_oversized_frames(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, ingest__max_frame_bytes=4096) as h:
            await h.add_agent("web-1")
            b = batch("web-1", 1, [T0])
            status, body = await h.push(b, body=b"not a frame at all")
            assert status == 400
            assert "malformed" in body["error"]
            status, body = await h.push(batch("web-1", 2, [h.clock.ms + 3_600_000]))
            assert status == 400
            assert "clock" in body["error"]
            big = encode(b) + bytes(5000)
            status, body = await h.push(b, body=big)
            assert status == 413
            assert "4096" in body["error"]

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(10):
                    yield bytes(1000)

            headers = {"Authorization": f"Bearer {h.tokens['web-1']}"}
            async with h.client.post("/api/v1/push", data=chunks(), headers=headers) as r:
                assert r.status == 413
            assert (await h.push(b))[0] == 200  # and the server goes on serving

    run(scenario())


def test_overload_answers_429_and_503_with_retry_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path, ingest__max_inflight=1) as h:
            await h.add_agent("web-1")
            hid = h.sql("SELECT id FROM hosts")[0][0]
            h.ingest.inflight[hid] = 1
            headers = {"Authorization": f"Bearer {h.tokens['web-1']}"}
            async with h.client.post(
                "/api/v1/push", data=encode(batch("web-1", 1, [T0])), headers=headers
            ) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "1"
            h.ingest.inflight[hid] = 0
            writer = h.store.writer

            def full(job):  # type: ignore[no-untyped-def]
                raise Overloaded

            real, writer.submit = writer.submit, full  # type: ignore[method-assign]
            async with h.client.post(
                "/api/v1/push", data=encode(batch("web-1", 1, [T0])), headers=headers
            ) as r:
                assert r.status == 503
                assert int(r.headers["Retry-After"]) > 0
                assert "busy" in (await r.json())["error"]
            writer.submit = real  # type: ignore[method-assign]
            assert (await h.push(batch("web-1", 1, [T0])))[0] == 200

    run(scenario())


def test_enrollment_trades_a_token_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        from edgewatch.aggregator import accounts

        async with harness(tmp_path) as h:
            now = h.clock.ms
            token = await h.store.write(lambda conn: accounts.add_enrollment(conn, now, uses=1))
            body = {"token": token, "hostname": "db-1"}
            async with h.client.post("/api/v1/enroll", json=body) as r:
                assert r.status == 200
                answer = await r.json()
            assert answer["agent_id"] == "db-1"
            assert answer["token"].startswith("ewa_db-1.")
            assert len(__import__("base64").b64decode(answer["public_key"])) == 32
            async with h.client.post("/api/v1/enroll", json={"token": token, "hostname": "db-2"}) as r:
                assert r.status == 403
                assert "used up" in (await r.json())["error"]
            async with h.client.post("/api/v1/enroll", json={"token": "ewe_x.y", "hostname": "db-2"}) as r:
                assert r.status == 403
            async with h.client.post("/api/v1/enroll", data=b"{nope") as r:
                assert r.status == 400
            async with h.client.post("/api/v1/enroll", json={"token": token, "hostname": "../etc"}) as r:
                assert r.status == 400
            h.tokens["db-1"] = answer["token"]
            assert (await h.push(batch("db-1", 1, [T0])))[0] == 200
            # the token is stored hashed: no row holds it in plain text
            assert all(
                answer["token"].split(".")[-1].encode() not in (row[0] or b"")
                for row in h.sql("SELECT token_hash FROM hosts")
            )

    run(scenario())


def test_unknown_paths_and_methods_answer_json(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            async with h.client.get("/api/v1/nothing") as r:
                assert r.status == 404
                assert "error" in await r.json()
            async with h.client.get("/api/v1/push") as r:
                assert r.status == 405
                assert "error" in await r.json()

    run(scenario())


def test_a_key_frame_resent_after_a_lost_answer_sets_the_reference_the_agent_holds(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            b1, b2, b3 = (batch("web-1", i, [T0 + i * 10_000]) for i in (1, 2, 3))
            assert (await h.push(b1))[0] == 200
            ref1 = next_reference(None, decode(encode(b1)))
            assert (await h.push(b2, ref=ref1))[0] == 200  # stored, but the agent never saw the answer
            assert (await h.push(b2, ref=ref1))[0] == 409  # our reference is newer now
            assert (await h.push(b2))[0] == 200  # so it sends b2 as a key frame: a duplicate
            agent_ref = next_reference(None, decode(encode(b2)))
            status, body = await h.push(b3, ref=agent_ref)
            assert (status, body["ack"]) == (200, 3)
            assert h.ingest.samples.get() == 9

    run(scenario())


def test_a_body_that_cannot_be_decoded_is_400_not_500(tmp_path: Path) -> None:
    """A Content-Encoding whose data is broken makes aiohttp fail while the handler reads the body."""

    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            garbage = bytes(range(256)) * 16
            for encoding in ("gzip", "deflate"):
                headers = {"Authorization": f"Bearer {h.tokens['web-1']}", "Content-Encoding": encoding}
                async with h.client.post("/api/v1/push", data=garbage, headers=headers) as r:
                    assert r.status == 400
                    assert "body" in (await r.json())["error"]
                headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
                async with h.client.post("/api/v1/enroll", data=garbage, headers=headers) as r:
                    assert r.status == 400
                    assert "body" in (await r.json())["error"]
            assert (await h.push(batch("web-1", 1, [T0])))[0] == 200  # and the server goes on serving

    run(scenario())


def test_a_body_the_http_parser_refuses_midway_is_400_not_500() -> None:
    """aiohttp's pure-Python parser hands a broken chunk to the handler reading the body."""
    from aiohttp import web
    from aiohttp.http_exceptions import TransferEncodingError
    from aiohttp.test_utils import make_mocked_request

    from edgewatch.aggregator.server import json_errors

    async def handler(request: web.Request) -> web.StreamResponse:
        raise TransferEncodingError("Not enough data to satisfy transfer length header.")

    async def scenario() -> None:
        response = await json_errors(make_mocked_request("POST", "/api/v1/push"), handler)
        assert isinstance(response, web.Response)
        assert response.status == 400
        assert response.text is not None
        assert "body" in json.loads(response.text)["error"]

    run(scenario())


def test_wrong_agent_tokens_from_one_address_are_limited_but_known_agents_still_push(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            assert (await h.push(batch("web-1", 1, [T0])))[0] == 200  # web-1 is now a known agent
            wrong = {"Authorization": "Bearer ewa_nobody_" + "x" * 40}
            statuses, body = [], {}
            for _ in range(AGENT_MAX_FAILURES + 3):
                async with h.client.post("/api/v1/push", data=b"x", headers=wrong) as r:
                    statuses.append(r.status)
                    body = await r.json()
            assert statuses[:AGENT_MAX_FAILURES] == [401] * AGENT_MAX_FAILURES
            assert statuses[AGENT_MAX_FAILURES:] == [429] * 3
            assert "retry in" in body["error"]
            async with h.client.post("/api/v1/push", data=b"x") as r:
                assert r.status == 429
                assert int(r.headers["Retry-After"]) > 0
            assert (await h.push(batch("web-1", 2, [T0 + 10_000])))[0] == 200

    run(scenario())


def test_metrics_count_the_loop_time_of_each_step_after_the_commit(tmp_path: Path) -> None:
    """``edgewatch_ingest_observer_seconds_total{step}``: host status and every observer by name,
    growing with each stored push; an observer that fails is timed too and the push is still 200."""

    def steps(text: str) -> dict[str, float]:
        pattern = r'^edgewatch_ingest_observer_seconds_total\{step="([^"]+)"\} (\S+)$'
        return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}

    async def scenario() -> None:
        async with harness(tmp_path) as h:
            await h.add_agent("web-1")
            viewer = await h.api_token()
            status, text = await h.get("/metrics", viewer)
            assert status == 200
            assert steps(text) == {"status": 0.0}

            def broken(host: str, b: Batch, now_ms: int) -> None:
                raise RuntimeError("a bug in an observer")

            h.ingest.observers["broken"] = broken
            assert (await h.push(batch("web-1", 1, [T0, T0 + 10_000])))[0] == 200
            first = steps((await h.get("/metrics", viewer))[1])
            assert {"status", "rules", "live", "federate", "broken"} <= first.keys()
            assert all(seconds > 0 for seconds in first.values())
            assert (await h.push(batch("web-1", 2, [T0 + 20_000])))[0] == 200
            second = steps((await h.get("/metrics", viewer))[1])
            assert all(second[name] > first[name] for name in first)

    run(scenario())

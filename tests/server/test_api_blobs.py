from __future__ import annotations

import hashlib
import os

DATA = os.urandom(200_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_upload_is_idempotent_and_audited(api) -> None:
    r = api.client.put(f"/v1/blobs/{SHA}", content=DATA, headers=api.admin)
    assert r.status_code == 201
    assert r.json() == {"sha256": SHA, "length": len(DATA)}
    r = api.client.put(f"/v1/blobs/{SHA}", content=DATA, headers=api.admin)
    assert r.status_code == 200
    assert r.json()["length"] == len(DATA)
    assert api.blob_files() == [api.blobs.path(SHA)]
    assert api.audit_actions() == ["blob.upload", "blob.upload"]


def test_wrong_sha256_leaves_nothing(api) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    r = api.client.put(f"/v1/blobs/{wrong}", content=DATA, headers=api.admin)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "sha256_mismatch"
    assert body["details"] == {"expected": wrong, "got": SHA}
    assert api.blob_files() == []
    assert api.count("audit_log") == 0


def test_oversized_upload_declared_or_streamed_leaves_nothing(make_api) -> None:
    api = make_api(max_blob_bytes=100_000)
    r = api.client.put(f"/v1/blobs/{SHA}", content=DATA, headers=api.admin)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"

    def chunked():  # no Content-Length: the limit must hold while streaming
        for i in range(0, len(DATA), 16384):
            yield DATA[i : i + 16384]

    r = api.client.put(f"/v1/blobs/{SHA}", content=chunked(), headers=api.admin)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert api.blob_files() == []
    assert api.count("audit_log") == 0


def test_invalid_digest_in_path(api) -> None:
    r = api.client.put("/v1/blobs/..%2F..%2Fetc", content=b"x", headers=api.admin)
    assert r.status_code in (404, 422)
    r = api.client.put("/v1/blobs/" + "A" * 64, content=b"x", headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_document"
    assert api.blob_files() == []


def test_ranged_and_conditional_download(api) -> None:
    api.upload(DATA)
    h = api.token("viewer")
    url = f"/v1/blobs/{SHA}"
    r = api.client.get(url, headers=h)
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["etag"] == f'"{SHA}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert "immutable" in r.headers["cache-control"]
    r = api.client.get(url, headers={**h, "Range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == DATA[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    r = api.client.get(url, headers={**h, "Range": "bytes=-100"})
    assert r.status_code == 206
    assert r.content == DATA[-100:]
    r = api.client.get(url, headers={**h, "Range": f"bytes={len(DATA)}-"})
    assert r.status_code == 416
    assert r.json()["code"] == "range_not_satisfiable"
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    r = api.client.get(url, headers={**h, "If-None-Match": f'"{SHA}"'})
    assert r.status_code == 304
    assert r.content == b""
    r = api.client.get(url, headers={**h, "Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200
    assert r.content == DATA
    r = api.client.get(url, headers={**h, "Range": "bytes=0-9", "If-Range": f'"{SHA}"'})
    assert r.status_code == 206
    assert r.content == DATA[:10]
    r = api.client.head(url, headers=h)
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(DATA))
    assert r.content == b""
    r = api.client.get("/v1/blobs/" + "0" * 64, headers=h)
    assert r.status_code == 404
    assert r.json()["code"] == "blob_not_found"


def test_viewer_cannot_upload(api) -> None:
    r = api.client.put(f"/v1/blobs/{SHA}", content=DATA, headers=api.token("viewer"))
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
    assert api.blob_files() == []

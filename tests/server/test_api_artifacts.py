from __future__ import annotations

import hashlib

CLASS = "medical-cart-cpu"  # the class manifest_for targets


def test_register_list_get_disable_download_delete(api, manifest_for) -> None:
    h = api.token("operator")
    model_bytes = b"m" * 5000
    manifest = manifest_for(model_bytes=model_bytes)
    r = api.client.post("/v1/artifacts", json={"manifest": manifest}, headers=h)
    assert r.status_code == 201, r.text
    art = r.json()
    assert art["id"].startswith("art_")
    assert len(art["id"]) == 20
    assert (art["model"], art["version"], art["hardware_class"]) == ("detector", "1.0.0", CLASS)
    assert art["disabled"] is False
    assert art["manifest"]["files"] == manifest["files"]
    again = api.client.post("/v1/artifacts", json={"manifest": manifest}, headers=h)
    assert again.status_code == 200
    assert again.json()["id"] == art["id"]
    assert api.count("artifacts") == 1

    listing = api.client.get(
        "/v1/artifacts", params={"model": "detector", "hardware_class": CLASS}, headers=h
    )
    assert [a["id"] for a in listing.json()["items"]] == [art["id"]]
    assert api.client.get("/v1/artifacts", params={"model": "other"}, headers=h).json()["total"] == 0
    assert api.client.get("/v1/artifacts", params={"disabled": True}, headers=h).json()["total"] == 0

    r = api.client.patch(
        f"/v1/artifacts/{art['id']}", json={"disabled": True, "reason": "bad recall"}, headers=h
    )
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert r.json()["disabled_reason"] == "bad recall"
    assert api.client.get("/v1/artifacts", params={"disabled": True}, headers=h).json()["total"] == 1

    f = api.client.get(f"/v1/artifacts/{art['id']}/files/model.onnx", headers={**h, "Range": "bytes=10-19"})
    assert f.status_code == 206
    assert f.content == model_bytes[10:20]
    missing = api.client.get(f"/v1/artifacts/{art['id']}/files/nope.bin", headers=h)
    assert missing.status_code == 404
    assert missing.json()["code"] == "file_not_found"

    r = api.client.delete(f"/v1/classes/{CLASS}", headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "class_in_use"
    r = api.client.delete("/v1/models/detector/versions/1.0.0", headers=h)
    assert r.status_code == 409
    assert r.json()["code"] == "version_in_use"
    assert api.client.delete(f"/v1/artifacts/{art['id']}", headers=h).status_code == 204
    assert api.client.get(f"/v1/artifacts/{art['id']}", headers=h).json()["code"] == "artifact_not_found"
    assert api.audit_actions()[:5] == [
        "artifact.delete",
        "artifact.disable",
        "artifact.create",  # once: the identical repeat above is not audited again
        "blob.upload",
        "blob.upload",
    ]


def test_different_manifest_for_same_triple_conflicts(api, manifest_for) -> None:
    api.client.post("/v1/artifacts", json={"manifest": manifest_for()}, headers=api.admin)
    r = api.client.post(
        "/v1/artifacts", json={"manifest": manifest_for(release_counter=2)}, headers=api.admin
    )
    assert r.status_code == 409
    assert r.json()["code"] == "artifact_exists"
    assert api.count("artifacts") == 1


def test_refusals_write_nothing(api, manifest_for) -> None:
    big = b"x" * (50 * 1024 * 1024 + 1)  # one byte over medical-cart-cpu's 50 MiB
    cases = [
        (manifest_for(hardware_class="no-such-class"), 404, "class_not_found"),
        (manifest_for(version="9.9.9"), 404, "version_not_found"),
        (manifest_for(model="ghost"), 404, "model_not_found"),
        (manifest_for(upload=False, model_bytes=b"never uploaded"), 422, "blob_missing"),
        (manifest_for(precision="fp16"), 422, "precision_unsupported"),
        (
            manifest_for(runtime={"name": "openvino", "execution_providers": ["CPUExecutionProvider"]}),
            422,
            "runtime_mismatch",
        ),
        (
            manifest_for(runtime={"name": "onnxruntime", "execution_providers": ["CUDAExecutionProvider"]}),
            422,
            "provider_unsupported",
        ),
        (manifest_for(optimization={"source_sha256": "f" * 64}), 422, "source_mismatch"),
        (manifest_for(schema_version=2), 422, "unsupported_schema_version"),
        (manifest_for(release_counter="one"), 422, "invalid_document"),
    ]
    m = manifest_for()
    m["files"][0]["length"] += 1
    cases.append((m, 422, "length_mismatch"))
    m = manifest_for(upload=False, model_bytes=big)
    cases.append((m, 422, "exceeds_budget"))
    m = manifest_for()
    m["files"][0]["path"] = "../x"
    m["entrypoint"] = "../x"
    cases.append((m, 422, "invalid_document"))
    before = api.count("audit_log")
    for manifest, status, code in cases:
        r = api.client.post("/v1/artifacts", json={"manifest": manifest}, headers=api.admin)
        assert (r.status_code, r.json()["code"]) == (status, code), (code, r.text)
        assert r.json()["message"]
    assert api.count("artifacts") == 0
    assert api.count("audit_log") == before


def test_file_path_must_be_safe(api, manifest_for) -> None:
    art = api.client.post("/v1/artifacts", json={"manifest": manifest_for()}, headers=api.admin).json()
    r = api.client.get(f"/v1/artifacts/{art['id']}/files/a/../../x", headers=api.admin)
    assert r.status_code in (404, 422)
    r = api.client.get(f"/v1/artifacts/{art['id']}/files/a%5Cb", headers=api.admin)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_path"
    sha = hashlib.sha256(b"golden-vectors").hexdigest()
    ok = api.client.get(f"/v1/artifacts/{art['id']}/files/golden.npz", headers=api.admin)
    assert ok.status_code == 200
    assert ok.headers["etag"] == f'"{sha}"'


def test_the_check_refuses_as_registering_would_before_any_upload(api, manifest_for) -> None:
    big = b"x" * (50 * 1024 * 1024 + 1)
    refusals = [
        (manifest_for(hardware_class="no-such-class", upload=False), 404, "class_not_found"),
        (manifest_for(version="9.9.9", upload=False), 404, "version_not_found"),
        (manifest_for(upload=False, model_bytes=big), 422, "exceeds_budget"),
        (manifest_for(precision="fp16", upload=False), 422, "precision_unsupported"),
        (manifest_for(optimization={"source_sha256": "f" * 64}, upload=False), 422, "source_mismatch"),
    ]
    uploaded = manifest_for()  # its file is on the server (the upload is audited, so before counting)
    before = api.count("audit_log")
    for manifest, status, code in refusals:
        r = api.client.post("/v1/artifacts/check", json={"manifest": manifest}, headers=api.admin)
        assert (r.status_code, r.json()["code"]) == (status, code), (code, r.text)
    # A good manifest: the check names the files the server lacks, and registers nothing.
    fresh = manifest_for(upload=False, model_bytes=b"not uploaded yet")
    r = api.client.post("/v1/artifacts/check", json={"manifest": fresh}, headers=api.admin)
    assert r.status_code == 200, r.text
    missing = r.json()["missing_blobs"]
    assert hashlib.sha256(b"not uploaded yet").hexdigest() in missing
    assert set(missing) <= {f["sha256"] for f in fresh["files"]}
    r = api.client.post("/v1/artifacts/check", json={"manifest": uploaded}, headers=api.admin)
    assert r.json() == {"ok": True, "missing_blobs": []}
    assert api.count("artifacts") == 0
    assert api.count("audit_log") == before
    # Viewers may not ask.
    viewer = api.client.post("/v1/tokens", json={"name": "v", "role": "viewer"}, headers=api.admin).json()
    as_viewer = {"authorization": f"Bearer {viewer['token']}"}
    r = api.client.post("/v1/artifacts/check", json={"manifest": uploaded}, headers=as_viewer)
    assert r.status_code == 403

"""Slots on disk: content-addressed versions, pointer switches, verification, bounded GC."""

from __future__ import annotations

import json

import pytest
from crash.artifacts import classifier, write_artifact

from edgefleet.agent.install.slots import Pointer, SlotStore, VersionCorruptError, atomic_write, version_key


def install(store: SlotStore, tmp_path, artifact_id: str, seed: int):
    manifest = write_artifact(tmp_path / "src", artifact_id, classifier(seed), version=f"1.{seed}")
    staged = store.new_staging()
    for entry in manifest.files:
        (staged / "files" / entry.path).write_bytes(
            (tmp_path / "src" / artifact_id / entry.path).read_bytes()
        )
    key = store.install_staged(staged, manifest)
    return key, manifest


def pointer(key: str, artifact_id: str) -> Pointer:
    return Pointer(key, artifact_id, 1, "2030-01-01T00:00:00+00:00")


@pytest.fixture
def store(tmp_path):
    return SlotStore(tmp_path / "data", "default")


def test_installed_version_is_content_addressed_and_verifies(store, tmp_path):
    key, manifest = install(store, tmp_path, "a1", 1)
    assert key == version_key(manifest)
    assert store.has_version(key)
    assert store.verify(key).to_dict() == manifest.to_dict()  # the installed copy, read without pydantic
    assert not any(store.staging_dir.iterdir())


def test_installing_the_same_content_twice_keeps_one_copy(store, tmp_path):
    key1, _ = install(store, tmp_path, "a1", 1)
    key2, _ = install(store, tmp_path, "a1", 1)
    assert key1 == key2
    assert store.versions() == [key1]


def test_switch_moves_active_to_previous(store, tmp_path):
    k1, _ = install(store, tmp_path, "a1", 1)
    k2, _ = install(store, tmp_path, "a2", 2)
    store.switch(pointer(k1, "a1"))
    assert store.read_previous() is None
    store.switch(pointer(k2, "a2"))
    assert (store.read_active().artifact_id, store.read_previous().artifact_id) == ("a2", "a1")


def test_switch_keeping_previous_replaces_only_active(store, tmp_path):
    k1, _ = install(store, tmp_path, "a1", 1)
    k2, _ = install(store, tmp_path, "a2", 2)
    k3, _ = install(store, tmp_path, "a3", 3)
    store.switch(pointer(k1, "a1"))
    store.switch(pointer(k2, "a2"))
    store.switch(pointer(k3, "a3"), keep_previous=True)
    assert (store.read_active().artifact_id, store.read_previous().artifact_id) == ("a3", "a1")


def test_rollback_restores_previous_and_clears_it(store, tmp_path):
    k1, _ = install(store, tmp_path, "a1", 1)
    k2, _ = install(store, tmp_path, "a2", 2)
    store.switch(pointer(k1, "a1"))
    store.switch(pointer(k2, "a2"))
    restored = store.rollback(at="2030-01-02T00:00:00+00:00")
    assert restored.artifact_id == "a1"
    assert store.read_active().version == k1
    assert store.read_previous() is None
    with pytest.raises(VersionCorruptError) as err:
        store.rollback(at="2030-01-03T00:00:00+00:00")
    assert err.value.code == "no_previous_version"


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_verify_detects_damaged_files(store, tmp_path, damage):
    key, _ = install(store, tmp_path, "a1", 1)
    path = store.files_dir(key) / "model.onnx"
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        path.write_bytes(data[:-10])
    else:
        path.unlink()
    with pytest.raises(VersionCorruptError) as err:
        store.verify(key)
    assert err.value.code in {"version_corrupt", "version_file_missing"}


def test_manifest_not_matching_its_address_is_corrupt(store, tmp_path):
    key, manifest = install(store, tmp_path, "a1", 1)
    data = manifest.to_dict() | {"release_counter": 99}
    (store.version_dir(key) / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(VersionCorruptError):
        store.verify(key)


def test_a_version_an_older_agent_installed_with_a_field_unknown_here_keeps_its_address(store, tmp_path):
    """An older agent kept a manifest's unknown fields (pydantic ``extra="allow"``) in the canonical manifest
    it hashed and stored; the struct drops them, so only the stored bytes still give the version's key."""
    import hashlib
    import shutil

    from edgefleet.protocol.canonical import canonical_json
    from edgefleet.protocol.manifest import ArtifactManifest as Model

    key, manifest = install(store, tmp_path, "a1", 1)
    stored = Model.parse(manifest.to_dict() | {"a_newer_field": {"from": "a newer build"}}).to_dict()
    raw = canonical_json(stored)
    old_key = hashlib.sha256(raw).hexdigest()  # the key the older agent gave it
    shutil.copytree(store.version_dir(key), store.version_dir(old_key))
    (store.version_dir(old_key) / "manifest.json").write_bytes(raw)
    assert version_key(store.verify(old_key)) == key  # read, and every file verified
    (store.version_dir(old_key) / "manifest.json").write_bytes(raw.replace(b"a newer build", b"tampered"))
    with pytest.raises(VersionCorruptError):
        store.read_manifest(old_key)


def test_unreadable_pointer_reads_as_none(store):
    store.dir.mkdir(parents=True)
    store.active_path.write_bytes(b'{"version": "abc"')
    assert store.read_active() is None


def test_atomic_write_crash_leaves_old_content(tmp_path):
    path = tmp_path / "active"
    atomic_write(path, b"old")

    class Died(Exception):
        pass

    def crash(point: str) -> None:
        raise Died(point)

    with pytest.raises(Died, match="write:active"):
        atomic_write(path, b"new content", crash)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["active"]


def test_gc_never_deletes_active_previous_or_trial_and_is_bounded(store, tmp_path):
    keys = [install(store, tmp_path, f"a{i}", i)[0] for i in range(7)]
    store.switch(pointer(keys[0], "a0"))
    store.switch(pointer(keys[1], "a1"))
    store.write_trial({"version": keys[2]})
    removed = store.gc(max_removals=2)
    assert len(removed) == 2
    assert not set(removed) & {keys[0], keys[1], keys[2]}
    removed += store.gc(max_removals=10)
    assert sorted(store.versions()) == sorted(keys[:3])
    assert sorted(removed) == sorted(keys[3:])
    assert store.verify(keys[0]).version == "1.0"
    assert store.verify(keys[1]).version == "1.1"


def test_refusal_counts_are_kept_per_artifact(store):
    assert store.count_rollback("a1") == 1
    assert store.count_rollback("a1") == 2
    assert store.count_rollback("a2") == 1
    assert store.read_refusals() == {"a1": 2, "a2": 1}


def test_a_rejection_is_counted_once_per_attempt(store):
    assert store.count_rollback("a1", attempt="att-1") == 1
    assert store.count_rollback("a1", attempt="att-1") == 1  # a recount after a restart changes nothing
    assert store.count_rollback("a1", attempt="att-2") == 2
    assert store.read_refusals() == {"a1": 2}


def test_refusals_written_before_attempts_were_recorded_still_read(store):
    store.dir.mkdir(parents=True)
    store.refusals_path.write_text(json.dumps({"a1": 2, "junk": "x"}))
    assert store.read_refusals() == {"a1": 2}
    assert store.count_rollback("a1", attempt="att-3") == 3
    assert store.read_refusals() == {"a1": 3}


class Died(Exception):
    pass


def dies_at(name: str):
    def crash(point: str) -> None:
        if point == name:
            raise Died(point)

    return crash


def test_rollback_cut_between_its_pointer_writes_leaves_previous_equal_to_active(tmp_path):
    plain = SlotStore(tmp_path / "data", "default")
    k1, _ = install(plain, tmp_path, "a1", 1)
    k2, _ = install(plain, tmp_path, "a2", 2)
    plain.switch(pointer(k1, "a1"))
    plain.switch(pointer(k2, "a2"))
    cut = SlotStore(tmp_path / "data", "default", crash=dies_at("rollback:active_replaced"))
    with pytest.raises(Died):
        cut.rollback(at="2030-01-02T00:00:00+00:00")
    assert plain.read_active().version == plain.read_previous().version == k1
    assert plain.drop_previous_if_active() is True
    assert (plain.read_active().version, plain.read_previous()) == (k1, None)
    assert plain.drop_previous_if_active() is False


def test_drop_previous_if_active_keeps_a_real_rollback_target(store, tmp_path):
    k1, _ = install(store, tmp_path, "a1", 1)
    k2, _ = install(store, tmp_path, "a2", 2)
    store.switch(pointer(k1, "a1"))
    store.switch(pointer(k2, "a2"))
    assert store.drop_previous_if_active() is False
    assert store.read_previous().version == k1


@pytest.mark.parametrize("point", ["gc:start", "gc:moved", "gc:deleting"])
def test_gc_cut_anywhere_leaves_only_whole_versions(tmp_path, point):
    plain = SlotStore(tmp_path / "data", "default")
    keys = [install(plain, tmp_path, f"a{i}", i)[0] for i in range(3)]
    plain.switch(pointer(keys[1], "a1"))
    plain.switch(pointer(keys[2], "a2"))
    cut = SlotStore(tmp_path / "data", "default", crash=dies_at(point))
    with pytest.raises(Died):
        cut.gc()
    for key in plain.versions():  # a version is whole under versions/, or gone from it
        plain.verify(key)
    assert (keys[0] in plain.versions()) == (point == "gc:start")
    plain.clear_staging()  # what recover() does first: the trash goes
    assert not (plain.dir / "trash").exists()
    assert plain.gc() == ([keys[0]] if point == "gc:start" else [])
    assert sorted(plain.versions()) == sorted(keys[1:])

"""``vantage operator keygen|keyid|keyset`` and ``vantage testlist show|diff|sign`` run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protocol.keyset import pinned_root, verify_chain
from vantagepoint import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def keygen(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, str]:
    code, out, _ = run(capsys, "operator", "keygen", "--out", str(path), "--json")
    assert code == 0
    return dict(json.loads(out))


def test_two_of_two_rotation_needs_cosigning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob, carol = (keygen(capsys, tmp_path / f"{n}.key") for n in ("alice", "bob", "carol"))
    assert (
        run(capsys, "operator", "keygen", "--out", str(tmp_path / "alice.key"))[0] == 2
    )  # no overwrite
    root = tmp_path / "operator-keys.txt"
    root.write_text(f"# pinned\n{alice['public_key']}\n{bob['public_key']}\n")
    out_file = tmp_path / "keyset-1.vks"
    code, out, _ = run(
        capsys, "operator", "keyset", "new", "--root", str(root), "--add", str(tmp_path / "carol.key.pub"),
        "--revoke", alice["key_id"], "--sign", str(tmp_path / "bob.key"), "--sign", str(tmp_path / "carol.key"),
        "--out", str(out_file), "--json",
    )  # fmt: skip
    assert code == 0
    assert "incomplete" in json.loads(out)["signatures"]  # bob alone is 1 of the 2 old keys needed
    code, out, _ = run(capsys, "operator", "keyset", "show", str(out_file), "--root", str(root))
    assert code == 2 and "needs 2" in out
    assert (
        run(
            capsys,
            "operator",
            "keyset",
            "sign",
            str(out_file),
            "--key",
            str(tmp_path / "alice.key"),
        )[0]
        == 0
    )
    code, out, _ = run(
        capsys, "operator", "keyset", "show", str(out_file), "--root", str(root), "--json"
    )
    shown = json.loads(out)
    assert code == 0 and shown["check"].startswith("complete")
    assert shown["revoked"] == [alice["key_id"]] and shown["threshold"] == 2
    import base64

    state = verify_chain(
        pinned_root([base64.b64decode(alice["public_key"]), base64.b64decode(bob["public_key"])]),
        [out_file.read_bytes()],
    )
    assert sorted(state.current.by_id) == sorted([bob["key_id"], carol["key_id"]])
    code, out, _ = run(capsys, "operator", "keyid", str(tmp_path / "carol.key.pub"))
    assert out.strip() == carol["key_id"]


def test_sign_show_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keygen(capsys, tmp_path / "ops.key")
    (tmp_path / "a.txt").write_text("https://a.world.test/\nhttps://b.domestic.test/\n")
    (tmp_path / "b.txt").write_text("https://a.world.test/\nhttps://c.world.test/\n")
    for name in ("a", "b"):
        code, _, _ = run(
            capsys, "testlist", "import", str(tmp_path / f"{name}.txt"), "--domestic-domain", "domestic.test",
            "--out", str(tmp_path / f"{name}.json"),
        )  # fmt: skip
        assert code == 0
    sign = ["testlist", "sign", "--key", str(tmp_path / "ops.key"), "--id", "xa", "--country", "xa"]
    assert run(capsys, *sign, str(tmp_path / "a.json"), "--out", str(tmp_path / "v1.vtl"))[0] == 0
    code, out, _ = run(
        capsys, *sign, str(tmp_path / "b.json"), "--previous", str(tmp_path / "v1.vtl"),
        "--out", str(tmp_path / "v2.vtl"), "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["version"] == 2
    code, _, err = run(
        capsys, *sign, str(tmp_path / "b.json"), "--previous", str(tmp_path / "v2.vtl"), "--version", "2",
        "--out", str(tmp_path / "bad.vtl"),
    )  # fmt: skip
    assert code == 2 and "not above" in err
    code, out, _ = run(
        capsys, "testlist", "diff", str(tmp_path / "v1.vtl"), str(tmp_path / "v2.vtl"), "--json"
    )
    diff = json.loads(out)
    assert code == 1
    assert [e["url"] for e in diff["added"]] == ["https://c.world.test/"]
    assert [e["url"] for e in diff["removed"]] == ["https://b.domestic.test/"]
    assert diff["metadata"]["version"] == {"old": 1, "new": 2}
    code, out, _ = run(capsys, "testlist", "show", str(tmp_path / "v2.vtl"))
    assert code == 0 and "xa v2: 2 entries, for XA" in out and "https://c.world.test/" in out
    (tmp_path / "junk.vtl").write_bytes((tmp_path / "v2.vtl").read_bytes()[:-9])
    code, _, err = run(capsys, "testlist", "show", str(tmp_path / "junk.vtl"))
    assert code == 2 and "truncated" in err


def test_operator_key_readable_by_others_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keygen(capsys, tmp_path / "ops.key")
    (tmp_path / "d.txt").write_text("https://a.world.test/\n")
    assert (
        run(
            capsys, "testlist", "import", str(tmp_path / "d.txt"), "--out", str(tmp_path / "d.json")
        )[0]
        == 0
    )
    (tmp_path / "ops.key").chmod(0o644)
    code, _, err = run(
        capsys, "testlist", "sign", str(tmp_path / "d.json"), "--key", str(tmp_path / "ops.key"),
        "--id", "xa", "--out", str(tmp_path / "x.vtl"),
    )  # fmt: skip
    assert code == 2 and "chmod 600" in err and not (tmp_path / "x.vtl").exists()

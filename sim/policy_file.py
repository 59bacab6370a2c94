"""The one policy file shape shared by `python -m sim --config` and `python -m service --config`.

A TOML file whose `[policy]` table holds `service.core.build_policy` keys (every key
written out, so the file means the same whatever the defaults become), with comments
saying where it came from. Owns writing that file; reading is `sim.flags.load_toml`
and `service.config.load_settings`. Must not run the model.
"""

from __future__ import annotations

from pathlib import Path

import tomli_w

from service.core import Policy, build_policy


def policy_toml(policy: Policy, comments: list[str] | None = None) -> str:
    """The text of a policy file for `policy`: comment lines, then the [policy] table."""
    header = "".join(f"# {line}\n" for line in (comments or []))
    header += ("# Read by `python -m sim --config FILE` and `python -m service --config FILE`\n"
               "# (the service also needs its sessions and back-office token, e.g. RECONNECT_LAB_SESSIONS\n"
               "# and RECONNECT_LAB_BACKOFFICE_TOKEN, or keys beside this table).\n")
    return header + tomli_w.dumps({"policy": policy.to_mapping()})


def write_policy_file(path: Path, policy: Policy, comments: list[str] | None = None) -> Path:
    """Write `policy` to `path` and check it reads back as the same policy."""
    text = policy_toml(policy, comments)
    import tomllib

    if build_policy(tomllib.loads(text)["policy"]) != policy:
        raise ValueError(f"policy file for {policy.codes.name!r} does not read back equal (a custom close-code "
                         "table cannot be written by name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path

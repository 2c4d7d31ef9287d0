"""The relay never holds plaintext: batches are sealed before they leave a device.

Canary texts are written on one device in every kind of place (user names and
e-mails, plain columns, encrypted fields, AI messages and memories, knowledge-graph
names and observations), synced to a second device (so they did travel), and looked
for in everything the relay stores: as bytes, in any letter case.
"""

from __future__ import annotations

from tests.sync_helpers import Devices, sync_all

from mangostore.sync import MemoryRelay

CANARIES = {
    "username": "zqcanaryuser",
    "email": "zq.canary.mail@example.org",
    "preference": "ZqCanaryPreference",
    "security_profile": "zq-canary-security-profile",
    "project_path": "/home/zq/canary-project-path",
    "security_config": "zq-canary-security-config",
    "command": "zq-canary-command --flag",
    "message": "zq canary message to the assistant",
    "conversation_data": "zq-canary-conversation-data",
    "memory": "zq-canary-memory-value",
    "entity": "zqcanaryentity",
    "alias": "zqcanaryalias",
    "observation": "zq canary observation content",
}


def test_no_plaintext_reaches_the_relay(devices: Devices, relay: MemoryRelay) -> None:
    a, b = devices(2)
    user = a.users.create(
        username=CANARIES["username"],
        email=CANARIES["email"],
        preferences={"note": CANARIES["preference"]},
        security_profile={"secret": CANARIES["security_profile"]},
    )
    project = a.projects.create(
        user_id=user.id,
        name="canary",
        path=CANARIES["project_path"],
        security_config={"token": CANARIES["security_config"]},
    )
    a.command_history.create(
        user_id=user.id, project_id=project.id, command=CANARIES["command"], timestamp=1
    )
    talk = a.conversations.create(user.id, data={"note": CANARIES["conversation_data"]})
    a.conversations.append(talk.id, "user", CANARIES["message"])
    a.memory.remember(user.id, "canary", CANARIES["memory"])
    entity = a.kg.upsert_entity(user.id, "concept", CANARIES["entity"]).entity
    a.kg.add_alias(entity, CANARIES["alias"])
    a.kg.observe(entity, "fact", CANARIES["observation"])

    sync_all([a, b])

    # They travelled: the other device reads every one of them.
    assert b.users.get(user.id).username == CANARIES["username"]
    assert b.users.get(user.id).security_profile == {"secret": CANARIES["security_profile"]}
    assert b.projects.get(project.id).security_config == {"token": CANARIES["security_config"]}
    assert [m.content for m in b.conversations.messages(talk.id)] == [CANARIES["message"]]
    assert b.memory.list(user.id)[0].value_data == CANARIES["memory"]
    assert b.kg.aliases(entity.id) == [CANARIES["alias"]]
    assert b.kg.observations(entity.id)[0].content == CANARIES["observation"]

    stored = relay.stored_bytes()
    assert len(stored) > 0
    # Letter case folded on both sides: no spelling of a canary is there.
    lowered = stored.lower()
    for place, text in CANARIES.items():
        assert text.lower().encode() not in lowered, f"the relay holds the {place} in clear"

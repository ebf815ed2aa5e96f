"""The embedded broker's check of last-will messages against the topic rules.

amqtt publishes a client's will when its connection drops without applying the publish ACL:
any account, the observer included, could CONNECT with a will on an agent's, a pool's or the
engine's topic, drop the connection, and have the will delivered as if it were allowed. This
plugin refuses such a CONNECT outright (MQTT 3.1.1 has no way to accept a connection and drop
only its will), as Mosquitto's ACL does for the same wills. Imported by the broker process only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.plugins.topic_checking import TopicAccessControlListPlugin
from amqtt.session import Session

log = logging.getLogger("moltsim.broker")


class WillAclPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt has no type hints
    """Refuses a connection whose will the account may not publish; abstains otherwise."""

    @dataclass
    class Config:
        publish_acl: dict[str, list[str]] = field(default_factory=dict)
        """Each account's publish rules, as the topic ACL plugin has them."""

    async def authenticate(self, *, session: Session) -> bool | None:
        if not session.will_flag:
            return None
        topic = session.will_topic or ""
        allowed = self.config.publish_acl.get(session.username or "", [])
        if any(TopicAccessControlListPlugin.topic_ac(topic, rule) for rule in allowed):
            return None
        log.warning(
            "refused a connection of %r: its will names %r, which it may not publish",
            session.username, topic,
        )  # fmt: skip
        return False

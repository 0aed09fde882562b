"""One active member per consumer group, the others standing by: leadership through Kafka's group protocol.

The anchorer and the settler each run as an active instance and a standby. Both join the same consumer
group with this assignor, which gives every partition of the group's topics to one member only: the
member that already held them, else the one whose id sorts first. The standby stays in the group,
heartbeating, with nothing assigned; when the active dies (kill -9), the broker drops it once its
session times out, the group rebalances and the standby receives every partition, resuming from
the committed offsets. Each run writes to a store both instances share, which recognises what the
other already did (anchored readings by (device, seq), settled intervals by their signed extrinsic),
so a takeover repeats nothing.

Why not the default assignors: they split partitions across members, so two anchorers would each
anchor part of an interval, and two settlers could each settle half of one.
"""

from __future__ import annotations

from collections import defaultdict

from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment, ConsumerProtocolSubscription

HOLDER = b"active"  # user data of the member that held the partitions before this rebalance


class ActiveStandbyAssignor(AbstractPartitionAssignor):
    """Every partition to a single member; every other member gets none (a standby)."""

    name = "citygrid-active-standby"
    version = 0

    def __init__(self) -> None:
        self.active = False  # this member held partitions after the last assignment

    def metadata(self, topics: set[str]) -> ConsumerProtocolSubscription:
        """This member's subscription, saying whether it is the active one (so leadership stays put)."""
        return ConsumerProtocolSubscription(version=self.version, topics=sorted(topics),
                                            user_data=HOLDER if self.active else b"")

    def assign(self, cluster: object, members: list) -> dict[str, ConsumerProtocolAssignment]:
        """All partitions of all subscribed topics to the holder, else to the first member by id."""
        if not members:
            return {}
        holders = [m.member_id for m in members if (m.metadata.user_data or b"") == HOLDER]
        chosen = min(holders) if holders else min(m.member_id for m in members)
        partitions: dict[str, list[int]] = defaultdict(list)
        for member in members:
            for topic in member.metadata.topics:
                if topic not in partitions:
                    partitions[topic] = sorted(cluster.partitions_for_topic(topic) or ())
        return {m.member_id: ConsumerProtocolAssignment(
                    version=self.version,
                    assigned_partitions=sorted(partitions.items()) if m.member_id == chosen else [],
                    user_data=b"")
                for m in members}

    def on_assignment(self, assignment: ConsumerProtocolAssignment, generation: int) -> None:
        """Remember whether this member is now the active one."""
        self.active = bool(assignment.partitions())

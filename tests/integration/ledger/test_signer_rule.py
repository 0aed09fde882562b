"""The dev-key rule against the real dev chain: it says it is a development chain, so //Alice may sign
there; the same key is refused when the node's answer is that of a live network."""

from __future__ import annotations

import pytest
from support import isolated_settings

from citygrid.ledger.chain import ChainClient
from citygrid.ledger.settlement import Settler
from citygrid.ledger.signer import DevKeyOnLiveChain, role_keypair
from citygrid.settings import CitygridSettings

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]


def test_the_local_dev_chain_is_a_dev_chain_and_alice_may_settle_on_it(
        servers: CitygridSettings, chain: ChainClient, tmp_path) -> None:
    s = isolated_settings(tmp_path)
    assert s.chain.signer_uri == "//Alice"  # the local platform's default
    assert chain.chain_type() in ("Development", "Local")
    settler = Settler.from_settings(s)  # asks the node, accepts //Alice
    assert settler.settler.ss58_address == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    settler.chain.close()
    with pytest.raises(DevKeyOnLiveChain, match="settler"):
        role_keypair(s, "settler", "Live")

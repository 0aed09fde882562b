"""Development tooling: the local servers, the demo, dev accounts.

Depends on the parts; never imported by edge/, stream/ or ledger/, and never shipped to devices.
"""
